#!/bin/sh
# dracut pre-udev hook (non-systemd initramfs): claim the configured devices for vfio-pci
# before udevd starts. Hooks are sourced by dracut's init: never `exit` here.
# `vfio-bind=off` on the kernel command line skips the claim (vfio-bind checks it).
if [ -x /usr/sbin/vfio-bind ]; then
    /usr/sbin/vfio-bind claim 2> /dev/kmsg || warn "vfio-bind: the claim failed; see the kernel log"
fi
