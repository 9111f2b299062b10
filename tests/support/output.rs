//! Reporter output made comparable across runs: hosts, durations, run ids and table padding
//! replaced by stable placeholders.

/// The output with what changes from run to run replaced: the hosts by H1, H2, durations by
/// `[t]`, deploy ids by `[id]`, and runs of spaces by two (table padding follows the hosts'
/// lengths).
pub fn normalized(text: &str, hosts: &[String]) -> String {
    let mut text = text.to_string();
    for (i, host) in hosts.iter().enumerate() {
        text = text.replace(host.as_str(), &format!("H{}", i + 1));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if let Some(len) = uuid_at(&chars[i..]) {
            out.push_str("[id]");
            i += len;
        } else if let Some(len) = duration_at(&chars[i..]) {
            out.push_str("[t]");
            i += len;
        } else if chars[i] == ' ' && chars.get(i + 1) == Some(&' ') {
            out.push_str("  ");
            while chars.get(i) == Some(&' ') {
                i += 1;
            }
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The length of a UUID at the start of `chars`.
fn uuid_at(chars: &[char]) -> Option<usize> {
    let shape = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    let fits = chars.len() >= shape.len()
        && shape.chars().zip(chars).all(|(want, got)| match want {
            '-' => *got == '-',
            _ => got.is_ascii_hexdigit(),
        });
    fits.then_some(shape.len())
}

/// The length of a duration (`0.41s`, `0.83 s`) at the start of `chars`.
fn duration_at(chars: &[char]) -> Option<usize> {
    let digits = |from: usize| {
        chars[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let whole = digits(0);
    if whole == 0 || chars.get(whole) != Some(&'.') {
        return None;
    }
    let fraction = digits(whole + 1);
    let mut end = whole + 1 + fraction;
    if fraction == 0 {
        return None;
    }
    if chars.get(end) == Some(&' ') {
        end += 1;
    }
    (chars.get(end) == Some(&'s')).then_some(end + 1)
}
