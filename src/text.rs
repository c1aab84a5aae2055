//! Text that reaches a terminal or the journal: [`escape`] for anything that came from
//! outside (config values and keys, file names, the state file), so that a newline cannot
//! forge a log line nor an ESC byte drive the terminal, and so that a huge value is not
//! echoed whole; [`fit`] for the 80-column layouts. A leaf module.

use std::fmt::Write;

/// The most characters of outside text a message echoes.
pub const ECHO_MAX: usize = 200;

/// `s` with control characters escaped (`\n`, `\t`, `\x1b`, `\u{85}`...) and cut to
/// [`ECHO_MAX`] characters with `…` when longer.
pub fn escape(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == ECHO_MAX {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `width` characters, with `…` when cut (the JSON has the full names).
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_long_text_cut() {
        assert_eq!(escape("a\nb\x1b[2Jc\u{85}"), "a\\nb\\x1b[2Jc\\u{85}");
        let long = "x".repeat(10_000);
        assert_eq!(escape(&long).chars().count(), ECHO_MAX + 1);
        assert_eq!(escape("plain"), "plain");
        assert_eq!(fit("abcdef", 4), "abc…");
    }
}
