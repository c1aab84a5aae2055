//! PCI identifiers: the PCI address (BDF) and the vendor:device ID.
//!
//! Formats follow the kernel's sysfs names (`Documentation/ABI/testing/sysfs-bus-pci`):
//! a device directory under `/sys/bus/pci/devices/` is named `dddd:bb:dd.f` (domain, bus,
//! device, function in lower-case hex), and `vendor` / `device` hold `0x%04x`.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Why a PCI address or ID string was rejected; the string is kept escaped and cut
/// ([`crate::text::escape`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Not `[dddd:]bb:dd.f` with hex fields in range (device ≤ 0x1f, function ≤ 7).
    #[error("invalid PCI address \"{0}\": expected domain:bus:device.function in hex, like 0000:01:00.0 or 01:00.0")]
    Address(String),
    /// Not `vvvv:dddd` with four hex digits on each side.
    #[error(
        "invalid PCI ID \"{0}\": expected vendor:device as four hex digits each, like 10de:1c03"
    )]
    Id(String),
}

/// A PCI address (BDF): domain, bus, device (slot), function.
///
/// Displays as the kernel names the device in sysfs, `dddd:bb:dd.f` (domain at least four
/// hex digits: VMD domains have five). Parses that form, or `bb:dd.f` meaning domain 0000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// PCI segment (domain), 0 on most hosts.
    pub domain: u32,
    /// Bus number, 0..=0xff.
    pub bus: u8,
    /// Device (slot) number, 0..=0x1f.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl FromStr for PciAddress {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::Address(crate::text::escape(s));
        let hex = |f: &str, max_len: usize| -> Result<u32, ParseError> {
            if f.is_empty() || f.len() > max_len || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u32::from_str_radix(f, 16).map_err(|_| err())
        };
        let (head, function) = s.rsplit_once('.').ok_or_else(err)?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, s] => (hex(d, 8)?, hex(b, 2)?, hex(s, 2)?),
            [b, s] => (0, hex(b, 2)?, hex(s, 2)?),
            _ => return Err(err()),
        };
        let function = hex(function, 1)?;
        if device > 0x1f || function > 7 {
            return Err(err());
        }
        Ok(PciAddress {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// A vendor:device ID pair, as in `lspci -nn` (`10de:1c03`). Also used for the
/// subsystem vendor:device pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciId {
    /// Vendor ID (sysfs `vendor`, or `subsystem_vendor`).
    pub vendor: u16,
    /// Device ID (sysfs `device`, or `subsystem_device`).
    pub device: u16,
}

impl FromStr for PciId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::Id(crate::text::escape(s));
        let (v, d) = s.split_once(':').ok_or_else(err)?;
        let hex4 = |f: &str| -> Result<u16, ParseError> {
            if f.len() != 4 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u16::from_str_radix(f, 16).map_err(|_| err())
        };
        Ok(PciId {
            vendor: hex4(v)?,
            device: hex4(d)?,
        })
    }
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

/// PCI header type (config-space byte 0x0e masked with 0x7f; PCI Local Bus spec).
///
/// Types 1 (PCI-to-PCI bridge) and 2 (CardBus bridge) are bridges: vfio-bind never
/// writes to them, and `Documentation/driver-api/vfio.rst` lets them stay on their
/// driver in a viable group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderType {
    /// Type 0: an endpoint.
    Normal,
    /// Type 1: PCI-to-PCI bridge (including PCIe root and downstream ports).
    PciBridge,
    /// Type 2: CardBus bridge.
    CardBusBridge,
    /// Any other value (reserved); treated as an endpoint.
    Other(u8),
}

impl HeaderType {
    /// Decode config-space byte 0x0e (the multifunction bit 0x80 is ignored).
    pub fn from_config_byte(b: u8) -> Self {
        match b & 0x7f {
            0 => HeaderType::Normal,
            1 => HeaderType::PciBridge,
            2 => HeaderType::CardBusBridge,
            n => HeaderType::Other(n),
        }
    }

    /// True for header types 1 and 2.
    pub fn is_bridge(self) -> bool {
        matches!(self, HeaderType::PciBridge | HeaderType::CardBusBridge)
    }
}

/// The 24-bit class code from sysfs `class` (`0xCCSSPP`: base class, subclass, prog-if).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassCode(pub u32);

impl ClassCode {
    /// Base class byte (0x03 display, 0x01 storage, 0x02 network, 0x0c serial bus...).
    pub fn base(self) -> u8 {
        (self.0 >> 16) as u8
    }
    /// Subclass byte.
    pub fn sub(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Base class and subclass as the four hex digits `lspci -nn` prints (`0c03`).
    pub fn class_id(self) -> u16 {
        (self.0 >> 8) as u16
    }
    /// A short English name for the common base classes (`lspci` style), else `class xxxx`.
    pub fn name(self) -> String {
        let s = match (self.base(), self.sub()) {
            (0x01, 0x00) => "SCSI storage controller",
            (0x01, 0x01) => "IDE interface",
            (0x01, 0x06) => "SATA controller",
            (0x01, 0x08) => "Non-Volatile memory controller",
            (0x01, _) => "Mass storage controller",
            (0x02, 0x00) => "Ethernet controller",
            (0x02, _) => "Network controller",
            (0x03, 0x00) => "VGA compatible controller",
            (0x03, 0x02) => "3D controller",
            (0x03, _) => "Display controller",
            (0x04, 0x03) => "Audio device",
            (0x04, _) => "Multimedia controller",
            (0x05, _) => "Memory controller",
            (0x06, 0x00) => "Host bridge",
            (0x06, 0x01) => "ISA bridge",
            (0x06, 0x04) => "PCI bridge",
            (0x06, _) => "Bridge",
            (0x07, _) => "Communication controller",
            (0x08, _) => "System peripheral",
            (0x0c, 0x03) => "USB controller",
            (0x0c, 0x05) => "SMBus",
            (0x0c, _) => "Serial bus controller",
            (0x12, _) => "Processing accelerators",
            (0xff, _) => "Unassigned class",
            _ => return format!("class {:04x}", self.class_id()),
        };
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_parses_full_and_short_forms() {
        let a: PciAddress = "0000:21:00.3".parse().unwrap();
        assert_eq!((a.domain, a.bus, a.device, a.function), (0, 0x21, 0, 3));
        assert_eq!(a.to_string(), "0000:21:00.3");
        let b: PciAddress = "21:00.3".parse().unwrap();
        assert_eq!(a, b);
        let c: PciAddress = "10000:e1:1f.7".parse().unwrap();
        assert_eq!(c.to_string(), "10000:e1:1f.7");
        assert_eq!("0000:0A:00.0".parse::<PciAddress>().unwrap().bus, 0x0a);
    }

    #[test]
    fn address_rejects_out_of_range_and_garbage() {
        for bad in [
            "",
            "0000:21:00",
            "0000:21:20.0",
            "0000:21:00.8",
            "0000:210:00.0",
            "zz:00.0",
            "0000:21:00.0.1",
            ":00.0",
            "1:2:3:00.0",
            "0000:21:00.",
            "+1:00.0",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn id_parses_and_displays() {
        let id: PciId = "10DE:1c03".parse().unwrap();
        assert_eq!(
            id,
            PciId {
                vendor: 0x10de,
                device: 0x1c03
            }
        );
        assert_eq!(id.to_string(), "10de:1c03");
        for bad in [
            "10de",
            "10de:1c0",
            "10de:1c033",
            "g0de:1c03",
            "10de-1c03",
            ":",
        ] {
            assert!(bad.parse::<PciId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn header_type_masks_multifunction_bit() {
        assert_eq!(HeaderType::from_config_byte(0x80), HeaderType::Normal);
        assert!(HeaderType::from_config_byte(0x81).is_bridge());
        assert!(HeaderType::from_config_byte(0x02).is_bridge());
        assert!(!HeaderType::from_config_byte(0x00).is_bridge());
    }

    #[test]
    fn class_names() {
        assert_eq!(ClassCode(0x0c0330).name(), "USB controller");
        assert_eq!(ClassCode(0x030000).name(), "VGA compatible controller");
        assert_eq!(ClassCode(0x0c0330).class_id(), 0x0c03);
        assert_eq!(ClassCode(0x0d1100).name(), "class 0d11");
    }
}
