//! Text layout for terminal output (80 columns).

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
