//! Text that came from workers (command output, facts, file contents) made safe to show on an
//! operator's terminal: control characters, which could move the cursor, retitle the window or
//! clear the screen, become visible escapes. JSON output and the journal keep the exact bytes;
//! only human views go through here.

use std::borrow::Cow;

/// `text` with every control character except tab written as a visible escape (`\e`, `\r`,
/// `\x07`, `\u{9b}`…), so printing it cannot change the terminal's state.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !is_unsafe(c) => out.push(c),
            '\u{1b}' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// C0 controls (but tab), DEL, and the C1 controls a terminal may act on (CSI, OSC, …).
fn is_unsafe(c: char) -> bool {
    c != '\t' && c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(visible("ok\tdone ünïcode"), Cow::Borrowed(_)));
    }

    #[test]
    fn title_and_clear_sequences_become_visible() {
        assert_eq!(
            visible("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "\\e]0;pwned\\x07\\e[2J"
        );
        assert_eq!(visible("a\rb\u{9b}31m\u{7f}"), "a\\rb\\u{9b}31m\\x7f");
    }
}
