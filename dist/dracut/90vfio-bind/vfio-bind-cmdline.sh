#!/bin/sh
# dracut hook (initramfs without systemd), installed as cmdline hook 00: claim the
# configured devices for vfio-pci before anything loads a host driver. It must run before
# the cmdline hook 01 of 90kernel-modules (parse-kernel.sh), which loads the
# rd.driver.pre= modules (--force-drivers, force_drivers+=): a pre-udev hook runs after it
# (measured: e1000e forced that way probed the device first). /proc, /sys, /dev and /run
# are mounted by then (99base/init.sh). Hooks are sourced by dracut's init: never `exit`.
# `vfio-bind=off` on the kernel command line skips the claim (vfio-bind checks it).
if [ -x /usr/sbin/vfio-bind ]; then
    /usr/sbin/vfio-bind claim 2> /dev/kmsg || warn "vfio-bind: the claim failed; see the kernel log"
fi
