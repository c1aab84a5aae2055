#!/bin/bash
# dracut module "vfio-bind" (dracut.modules(7)): claim the PCI devices that
# /etc/vfio-bind.toml names (whole IOMMU groups) for vfio-pci in the initramfs, before
# udev's coldplug and before any module dracut was told to load. Included by default
# whenever the config names devices; `vfio-bind=off` on the kernel command line skips it.

VFIO_BIND=/usr/sbin/vfio-bind

# 0: include by default (the config names devices); 255: only when asked for.
check() {
    [[ -x $VFIO_BIND ]] || return 255
    "$VFIO_BIND" -q claim --files > /dev/null 2>&1 || return 255
    return 0
}

depends() {
    return 0
}

# The type1 IOMMU backend and the modules of the drivers the config binds to (vfio-pci,
# pci-stub, a vfio variant driver), even in hostonly mode (which keeps only the modules
# some present device uses: no device uses vfio-pci before it is claimed).
installkernel() {
    # shellcheck disable=SC2046
    hostonly='' instmods vfio_iommu_type1 $("$VFIO_BIND" -q claim --modules 2> /dev/null)
}

install() {
    local f
    inst_binary "$VFIO_BIND"
    while IFS= read -r f; do
        [[ $f ]] && inst_simple "$f"
    done < <("$VFIO_BIND" -q claim --files 2> /dev/null)
    if dracut_module_included "systemd"; then
        # A native initrd unit, ordered before udevd, the coldplug, systemd-modules-load
        # and dracut-cmdline (which loads rd.driver.pre= modules): neither of dracut's
        # pre-udev and pre-trigger hook services is ordered before all of those.
        inst_simple "$moddir/vfio-bind-initrd.service" "$systemdsystemunitdir/vfio-bind-initrd.service"
        # Pulled in by sysinit.target (the unit has no [Install] section of its own).
        mkdir -p "$initdir$systemdsystemunitdir/sysinit.target.wants"
        ln_r "$systemdsystemunitdir/vfio-bind-initrd.service" \
            "$systemdsystemunitdir/sysinit.target.wants/vfio-bind-initrd.service"
    else
        # The shell init (99base/init.sh): the first cmdline hook, before 90kernel-modules'
        # parse-kernel.sh (cmdline 01) loads rd.driver.pre= modules and long before udevd.
        inst_hook cmdline 00 "$moddir/vfio-bind-cmdline.sh"
    fi
}
