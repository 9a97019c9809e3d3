//! HAProxy's word splitting for configuration lines: words are separated by
//! blanks; `\` escapes the next character (`Host:\ localhost`), double
//! quotes group words and keep `\"`, `\\` escapes, single quotes group words
//! literally. `\r`, `\n`, `\t` outside single quotes are control characters,
//! as in HAProxy's `option httpchk` strings.

/// Splits `line` into words, or says why it cannot.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), c) => word.push(c),
            (_, '\\') => {
                let next = chars
                    .next()
                    .ok_or_else(|| "a line cannot end with a backslash".to_owned())?;
                word.push(match next {
                    'r' => '\r',
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                in_word = true;
            }
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unmatched {q} quote"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn splits_like_haproxy() {
        let cases: &[(&str, &[&str])] = &[
            ("a  b\tc", &["a", "b", "c"]),
            (
                r"HEAD / HTTP/1.1\r\nHost:\ localhost",
                &["HEAD", "/", "HTTP/1.1\r\nHost: localhost"],
            ),
            (r#"set-header X "a b" c"#, &["set-header", "X", "a b", "c"]),
            (r#"x "a \"q\" b""#, &["x", "a \"q\" b"]),
            (r"x 'a \n b'", &["x", r"a \n b"]),
            (r#"x """#, &["x", ""]),
            ("", &[]),
        ];
        for (line, expected) in cases {
            assert_eq!(split_words(line).unwrap(), *expected, "{line}");
        }
    }

    #[test]
    fn rejects_unbalanced_quotes_and_trailing_backslash() {
        assert!(split_words(r#"x "abc"#).is_err());
        assert!(split_words("x 'abc").is_err());
        assert!(split_words("x \\").is_err());
    }
}
