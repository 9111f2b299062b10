//! Shell quoting: the one function through which every value that reaches a remote shell
//! passes. It never decides what to run, only how a word survives one round of shell parsing.

use std::borrow::Cow;

/// Quotes `word` so that a POSIX shell (bash, dash) parses it back as exactly one word with
/// exactly these characters. Words made only of characters no shell treats specially are
/// returned as they are, so journaled command lines stay readable.
///
/// A NUL character cannot travel through a shell at all; [`crate::remote::RemoteCommand`]
/// rejects it before quoting.
pub fn shell_quote(word: &str) -> Cow<'_, str> {
    if !word.is_empty() && word.bytes().all(is_plain) {
        return Cow::Borrowed(word);
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        if c == '\'' {
            // Close the quote, add an escaped quote, reopen.
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

/// Bytes that mean nothing to a shell in any position of a word. `=` is left out (a first
/// word `A=b` is an assignment), and so are `~`, globs, braces and every other operator.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'_' | b'-' | b'.' | b'/' | b',' | b':' | b'@' | b'%' | b'+'
        )
}

#[cfg(test)]
mod tests {
    use super::shell_quote;
    use proptest::prelude::*;
    use std::process::Command;

    fn printed_by_bash(word: &str) -> String {
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(word)))
            .output()
            .expect("bash runs");
        assert!(output.status.success(), "bash failed for {word:?}");
        String::from_utf8(output.stdout).expect("utf-8")
    }

    #[test]
    fn plain_words_are_left_readable() {
        assert_eq!(
            shell_quote("/opt/worker/abc-1/bin/runner.py"),
            "/opt/worker/abc-1/bin/runner.py"
        );
        assert_eq!(shell_quote("a=b"), "'a=b'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn hostile_words_reach_the_shell_as_data() {
        for word in [
            ";rm -rf /",
            "$(touch /tmp/pwned)",
            "`id`",
            "it's",
            "'",
            "''",
            "\"double\"",
            "line one\nline two",
            "back\\slash",
            "*",
            "~",
            "a b\tc",
            "$HOME",
            "!!",
            "-n",
        ] {
            assert_eq!(printed_by_bash(word), word);
        }
    }

    proptest! {
        #[test]
        fn every_string_round_trips_through_bash(word in any::<String>().prop_filter("no NUL", |w| !w.contains('\0'))) {
            prop_assert_eq!(printed_by_bash(&word), word);
        }
    }
}
