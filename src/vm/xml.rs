//! The PCI devices a libvirt domain XML passes through: `<hostdev mode='subsystem'
//! type='pci'>` and `<interface type='hostdev'>` (an SR-IOV VF), each with its
//! `<source><address domain= bus= slot= function=/></source>` (libvirt's
//! `docs/formatdomain.rst`, "Host device assignment"). libvirt hands the hook the whole
//! XML on stdin; `attach --xml FILE` reads it from a file. Parsed with `roxmltree`
//! (read-only, positions kept); nothing else of the domain is interpreted.

use std::path::Path;

use thiserror::Error;

use crate::config::Origin;
use crate::pci::PciAddress;

/// A domain XML that cannot be used, with `file:line:column` where there is one.
#[derive(Debug, Error)]
#[error("{origin}: {message}")]
pub struct XmlError {
    /// Where (the file, or `<stdin>`; 1-based line and column).
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
}

/// What vfio-bind reads from a domain XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// `<name>`, when present.
    pub name: Option<String>,
    /// The host PCI addresses passed through, in document order, each with where its
    /// `<address>` is written.
    pub hostdevs: Vec<(PciAddress, Origin)>,
}

/// Where `pos` (a byte offset) is in `doc`, read from `file`.
fn origin(file: &Path, doc: &roxmltree::Document, pos: usize) -> Origin {
    let p = doc.text_pos_at(pos);
    Origin {
        file: file.to_path_buf(),
        line: p.row as usize,
        column: p.col as usize,
    }
}

/// Parse `text`, the XML of a domain, read from `file` (named in errors; `<stdin>` for
/// the hook's).
///
/// Errors: [`XmlError`] when the text is not XML, its root is not `<domain>`, or a PCI
/// hostdev's `<address>` lacks an attribute or holds one out of range.
pub fn parse(file: &Path, text: &str) -> Result<Domain, XmlError> {
    let doc = roxmltree::Document::parse(text).map_err(|e| {
        let p = e.pos();
        XmlError {
            origin: Origin {
                file: file.to_path_buf(),
                line: p.row as usize,
                column: p.col as usize,
            },
            message: format!("not a domain XML: {e}"),
        }
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" {
        return Err(XmlError {
            origin: origin(file, &doc, root.range().start),
            message: format!(
                "the root element is <{}>, not <domain>",
                crate::text::escape(root.tag_name().name())
            ),
        });
    }
    let name = root
        .children()
        .find(|n| n.has_tag_name("name"))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string());
    let mut hostdevs = Vec::new();
    for devices in root.children().filter(|n| n.has_tag_name("devices")) {
        for dev in devices.children().filter(|n| passes_pci(n)) {
            hostdevs.push(hostdev(file, &doc, &dev)?);
        }
    }
    Ok(Domain { name, hostdevs })
}

/// True for a `<hostdev mode='subsystem' type='pci'>` or an `<interface type='hostdev'>`.
fn passes_pci(dev: &roxmltree::Node) -> bool {
    match dev.tag_name().name() {
        "hostdev" => {
            dev.attribute("mode").unwrap_or("subsystem") == "subsystem"
                && dev.attribute("type") == Some("pci")
        }
        "interface" => dev.attribute("type") == Some("hostdev"),
        _ => false,
    }
}

/// The host address of a PCI hostdev element, with where its `<address>` is.
fn hostdev(
    file: &Path,
    doc: &roxmltree::Document,
    dev: &roxmltree::Node,
) -> Result<(PciAddress, Origin), XmlError> {
    let Some(addr) = dev
        .children()
        .find(|n| n.has_tag_name("source"))
        .and_then(|s| s.children().find(|n| n.has_tag_name("address")))
    else {
        return Err(XmlError {
            origin: origin(file, doc, dev.range().start),
            message: format!(
                "<{}> has no <source><address .../></source>",
                dev.tag_name().name()
            ),
        });
    };
    let at = origin(file, doc, addr.range().start);
    match address(&addr) {
        Ok(a) => Ok((a, at)),
        Err(message) => Err(XmlError {
            origin: at,
            message,
        }),
    }
}

/// The host address of a `<source><address domain='0x0000' bus='0x01' slot='0x00'
/// function='0x0'/>` (hex with `0x`, or decimal, as libvirt accepts; `domain` defaults
/// to 0).
fn address(node: &roxmltree::Node) -> Result<PciAddress, String> {
    let field = |name: &str, max: u32, required: bool| -> Result<u32, String> {
        let Some(v) = node.attribute(name) else {
            return if required {
                Err(format!("<address> has no {name}= attribute"))
            } else {
                Ok(0)
            };
        };
        let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16),
            None => v.parse(),
        };
        n.ok().filter(|&n| n <= max).ok_or_else(|| {
            format!(
                "<address {name}='{}'>: not a number up to {max:#x}",
                crate::text::escape(v)
            )
        })
    };
    Ok(PciAddress {
        domain: field("domain", 0xffff_ffff, false)?,
        bus: field("bus", 0xff, true)? as u8,
        device: field("slot", 0x1f, true)? as u8,
        function: field("function", 7, true)? as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Domain, XmlError> {
        parse(Path::new("<stdin>"), text)
    }

    #[test]
    fn pci_hostdevs_and_vf_interfaces_are_read_in_order() {
        let d = p(r#"<domain type='kvm'>
  <name>win11</name>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/></source>
    </hostdev>
    <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/></source></hostdev>
    <interface type='hostdev'><source><address type='pci' bus='0x03' slot='0x10' function='0x2'/></source></interface>
    <interface type='network'><source network='default'/></interface>
    <hostdev mode='capabilities' type='storage'><source><block>/dev/sdb</block></source></hostdev>
  </devices>
</domain>"#)
        .unwrap();
        assert_eq!(d.name.as_deref(), Some("win11"));
        let a: Vec<String> = d.hostdevs.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(a, ["0000:01:00.1", "0000:03:10.2"]);
        assert_eq!((d.hostdevs[0].1.line, d.hostdevs[0].1.column), (5, 15));
    }

    #[test]
    fn bad_xml_names_line_and_column() {
        let e = p("<domain>\n<devices>\n<hostdev type='pci'><source><address bus='0x01' slot='0x20' function='0'/></source></hostdev></devices></domain>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "<stdin>:3:29: <address slot='0x20'>: not a number up to 0x1f"
        );
        let e = p("<domain><devices>").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("<stdin>:1:1: not a domain XML: the root node was opened"),
            "{e}"
        );
        let e = p("<network/>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "<stdin>:1:1: the root element is <network>, not <domain>"
        );
        let e = p("<domain><devices><hostdev type='pci'><source/></hostdev></devices></domain>")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "<stdin>:1:18: <hostdev> has no <source><address .../></source>"
        );
    }
}
