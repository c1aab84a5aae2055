//! libvirt domain names as vfio-bind uses them: checked the way `[[vm]] name` is, and
//! turned into a file name for `/run/vfio-bind/vms/`.

/// True for a name vfio-bind accepts as a libvirt domain name: 1 to 255 bytes, no `/`
/// (libvirt refuses it in names), no control characters.
pub fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

/// The file name of a VM's record: the name with every byte outside `[A-Za-z0-9_-]`
/// written `%XX` (so `.`, `..` and names that differ only there stay distinct), then
/// `.toml`.
pub fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 5);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".toml");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_escaped_for_files() {
        assert!(valid("win11"));
        assert!(valid("my vm (gpu)"));
        assert!(!valid(""));
        assert!(!valid("a/b"));
        assert!(!valid("a\nb"));
        assert!(!valid(&"x".repeat(256)));
        assert_eq!(file_name("win11"), "win11.toml");
        assert_eq!(file_name(".."), "%2E%2E.toml");
        assert_eq!(file_name("a b.c"), "a%20b%2Ec.toml");
        assert_eq!(file_name("é"), "%C3%A9.toml");
    }
}
