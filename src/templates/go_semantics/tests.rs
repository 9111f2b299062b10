//! Go semantics of the `go_*` functions, each checked against what Go 1.19 prints.

use super::*;

fn s(text: &str) -> GoValue {
    GoValue::Str(text.to_string())
}

fn list(items: &[&str]) -> GoValue {
    GoValue::List(items.iter().map(|item| item.to_string()).collect())
}

#[test]
fn sprintf_formats_strings_with_flags_like_go() {
    let args = [
        s("ab"),
        s("ab"),
        s("xyz"),
        s("hi"),
        s("hi"),
        s("hi"),
        s("a\u{a0}é"),
        s("é"),
        s("a`b"),
    ];
    assert_eq!(
        sprintf("%05s|%-5s|%5.1s|%x|% x|%#x|%q|%+q|%#q", &args),
        "000ab|ab   |    x|6869|68 69|0x6869|\"a\\u00a0é\"|\"\\u00e9\"|\"a`b\""
    );
}

#[test]
fn sprintf_reports_bad_verbs_missing_and_extra_arguments_like_go() {
    assert_eq!(sprintf("%5d", &[s("ab")]), "%!d(string=   ab)");
    assert_eq!(sprintf("%d %d", &[GoValue::Int(1)]), "1 %!d(MISSING)");
    assert_eq!(
        sprintf("%d", &[GoValue::Int(1), GoValue::Int(2), s("x")]),
        "1%!(EXTRA int=2, string=x)"
    );
    assert_eq!(sprintf("%", &[]), "%!(NOVERB)");
    assert_eq!(sprintf("%!", &[]), "%!!(MISSING)");
}

#[test]
fn sprintf_formats_lists_element_by_element() {
    let labels = list(&["a", "b"]);
    assert_eq!(
        sprintf(
            "%v|%s|%d|%5v",
            &[labels.clone(), labels.clone(), labels.clone(), labels]
        ),
        "[a b]|[a b]|[%!d(string=a) %!d(string=b)]|[    a     b]"
    );
}

#[test]
fn sprintf_formats_integers_like_go() {
    let args: Vec<GoValue> = [5, 5, 5, -255, 8, 8, 5, 65, 65, 65, 65]
        .into_iter()
        .map(GoValue::Int)
        .collect();
    assert_eq!(
        sprintf("%08.3d|%+d|% d|%x|%#o|%O|%b|%c|%q|%U|%#U", &args),
        "     005|+5| 5|-ff|010|0o10|101|A|'A'|U+0041|U+0041 'A'"
    );
    assert_eq!(
        sprintf(
            "%.0d|%6.2d|%-6d|%02d",
            &[
                GoValue::Int(0),
                GoValue::Int(7),
                GoValue::Int(7),
                GoValue::Int(3)
            ]
        ),
        "|    07|7     |03"
    );
}

#[test]
fn sprintf_formats_bools_and_go_syntax() {
    let args = [
        GoValue::Bool(true),
        GoValue::Bool(false),
        GoValue::Bool(true),
        GoValue::Bool(true),
    ];
    assert_eq!(
        sprintf("%t|%v|%5t|%d", &args),
        "true|false| true|%!d(bool=true)"
    );
    assert_eq!(
        sprintf(
            "%#v|%#v|%#v|%+v",
            &[s("a"), GoValue::Int(5), list(&["a", "b"]), GoValue::Int(5)]
        ),
        "\"a\"|5|[]string{\"a\", \"b\"}|5"
    );
}

#[test]
fn sprint_puts_spaces_only_between_non_strings() {
    let args = [
        GoValue::Int(1),
        GoValue::Int(2),
        s("a"),
        GoValue::Int(3),
        s("b"),
        s("c"),
        GoValue::Bool(true),
        GoValue::Bool(false),
    ];
    assert_eq!(sprint(&args), "1 2a3bctrue false");
    assert_eq!(sprintln(&[s("a"), GoValue::Int(1)]), "a 1\n");
}

#[test]
fn arithmetic_wraps_and_division_truncates_toward_zero() {
    assert_eq!(arithmetic(Arith::Div, -7, 2).unwrap(), Value::from(-3i64));
    assert_eq!(arithmetic(Arith::Div, 7, -2).unwrap(), Value::from(-3i64));
    assert_eq!(
        arithmetic(Arith::Add, i64::MAX, 1).unwrap(),
        Value::from(i64::MIN)
    );
    assert!(arithmetic(Arith::Div, 1, 0).is_err());
}

#[test]
fn equality_and_ordering_refuse_mixed_kinds() {
    assert!(go_equal(&s("a"), &s("a")).unwrap());
    assert!(!go_equal(&GoValue::Int(1), &GoValue::Int(2)).unwrap());
    assert!(go_equal(&s("1"), &GoValue::Int(1)).is_err());
    assert!(go_equal(&list(&[]), &list(&[])).is_err());
    assert_eq!(
        go_compare(&s("B"), &s("a")).unwrap(),
        std::cmp::Ordering::Less
    );
    assert!(go_compare(&GoValue::Bool(true), &GoValue::Bool(false)).is_err());
}

#[test]
fn index_reads_list_items_and_string_bytes() {
    assert_eq!(index(list(&["a", "b"]), &[1]).unwrap(), s("b"));
    assert_eq!(index(s("abc"), &[1]).unwrap(), GoValue::Int(98));
    assert!(index(list(&["a"]), &[1]).is_err());
    assert!(index(list(&["a"]), &[-1]).is_err());
}

#[test]
fn slice_cuts_strings_by_bytes_and_lists_by_items() {
    assert_eq!(slice(s("abc"), &[1]).unwrap(), s("bc"));
    assert_eq!(slice(s("abc"), &[1, 2]).unwrap(), s("b"));
    assert_eq!(
        slice(list(&["a", "b", "c"]), &[0, 2, 3]).unwrap(),
        list(&["a", "b"])
    );
    assert!(slice(s("abc"), &[2, 1]).is_err());
    assert!(slice(s("é"), &[1]).is_err());
}

#[test]
fn split_with_an_empty_separator_splits_characters() {
    assert_eq!(split("ab", ""), vec!["a", "b"]);
    assert_eq!(split("", ","), vec![""]);
    assert_eq!(split("a,,b", ","), vec!["a", "", "b"]);
}

#[test]
fn int_trims_then_parses_base_ten() {
    assert_eq!(to_int(&s(" 42\n")).unwrap(), 42);
    assert_eq!(to_int(&s("+7")).unwrap(), 7);
    assert!(to_int(&s("1.5")).is_err());
    assert!(to_int(&s("0x10")).is_err());
    assert_eq!(to_int(&GoValue::Int(-3)).unwrap(), -3);
}

#[test]
fn case_mapping_is_one_character_to_one() {
    assert_eq!(to_upper("ßtraße"), "ßTRAßE");
    assert_eq!(to_lower("İSTANBUL ΣΑΣ"), "istanbul σασ");
    assert_eq!(to_upper("\u{1f80}"), "\u{1f88}");
}

#[test]
fn quote_escapes_like_strconv() {
    assert_eq!(
        quote("a\"b\\c\n\u{7}\u{7f}é\u{200b}", false),
        "\"a\\\"b\\\\c\\n\\a\\x7fé\\u200b\""
    );
    assert_eq!(quote("é😀", true), "\"\\u00e9\\U0001f600\"");
}
