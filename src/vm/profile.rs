//! A `[[vm]]` profile as planning takes it: a [`Config`] whose entries are the VM's
//! devices (its `devices`, or the PCI `<hostdev>`s of the domain XML), with the
//! profile's driver and ownership, `required` (a device the VM needs and the host lacks
//! fails the attach), and the boot VGA allowed exactly when `handover = true`. Pure.

use crate::config::{Config, Entry, Selector, VmProfile};
use crate::vm::xml::Domain;

/// Why a profile gives no devices to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoDevices {
    /// The profile names no `devices` and no domain XML was given.
    NoXml,
    /// The domain XML passes no PCI device through.
    NoHostdevs,
}

/// The config `attach` plans for `vm`: the top-level settings of `config`, the VM's
/// devices as entries (numbered from 1, `device[N]` in messages meaning the VM's N-th
/// device), no other entry and no profile.
///
/// Errors: [`NoDevices`] when there is nothing to attach.
pub fn config(
    config: &Config,
    vm: &VmProfile,
    domain: Option<&Domain>,
) -> Result<Config, NoDevices> {
    let selectors: Vec<(Selector, crate::config::Origin)> = match (&vm.devices, domain) {
        (Some(list), _) => list.clone(),
        (None, Some(d)) if d.hostdevs.is_empty() => return Err(NoDevices::NoHostdevs),
        (None, Some(d)) => d
            .hostdevs
            .iter()
            .map(|(a, o)| (Selector::Address(*a), o.clone()))
            .collect(),
        (None, None) => return Err(NoDevices::NoXml),
    };
    let entries = selectors
        .into_iter()
        .enumerate()
        .map(|(i, (selector, origin))| Entry {
            index: i + 1,
            origin,
            selector,
            subsystem: None,
            driver: vm.driver.clone(),
            ownership: vm.ownership.clone(),
            allow_boot_vga: vm.handover,
            required: true,
        })
        .collect();
    Ok(Config {
        entries,
        vms: Vec::new(),
        ..config.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(src: &str) -> Config {
        crate::config::parse(&[(Path::new("/etc/vfio-bind.toml"), src)]).unwrap()
    }

    #[test]
    fn devices_win_over_the_xml_and_handover_allows_the_boot_vga() {
        let c = cfg("user = 0\n[[device]]\naddress = \"05:00.0\"\n[[vm]]\nname = \"a\"\ndevices = [\"01:00.0\", \"10de:1c03\"]\nhandover = true\n[[vm]]\nname = \"b\"\nmode = \"0600\"\n");
        let xml = crate::vm::xml::parse(
            Path::new("<stdin>"),
            "<domain><devices><hostdev type='pci'><source><address bus='2' slot='0' function='0'/></source></hostdev></devices></domain>",
        )
        .unwrap();
        let a = config(&c, c.vm("a").unwrap(), Some(&xml)).unwrap();
        let sel: Vec<String> = a.entries.iter().map(|e| e.selector.to_string()).collect();
        assert_eq!(sel, ["address 0000:01:00.0", "id 10de:1c03"]);
        assert!(a.entries.iter().all(|e| e.allow_boot_vga && e.required));
        assert_eq!(a.entries[0].ownership.user, c.ownership.user);
        assert!(a.vms.is_empty());
        let b = config(&c, c.vm("b").unwrap(), Some(&xml)).unwrap();
        assert_eq!(b.entries.len(), 1);
        assert_eq!(b.entries[0].selector.to_string(), "address 0000:02:00.0");
        assert_eq!(
            (b.entries[0].origin.line, b.entries[0].origin.file.to_str()),
            (1, Some("<stdin>"))
        );
        assert!(!b.entries[0].allow_boot_vga);
        assert_eq!(b.entries[0].ownership.mode, Some(0o600));
        assert_eq!(config(&c, c.vm("b").unwrap(), None), Err(NoDevices::NoXml));
        let empty = crate::vm::xml::parse(Path::new("x"), "<domain/>").unwrap();
        assert_eq!(
            config(&c, c.vm("b").unwrap(), Some(&empty)),
            Err(NoDevices::NoHostdevs)
        );
    }
}
