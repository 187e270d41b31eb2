//! A reader for the one-line YAML flow mappings LAVA logs.
//!
//! `lava-run` writes its log to stderr as one YAML flow mapping per line
//! (`{"dt": "...", "lvl": "results", "msg": {...}}`), and a lava-server job log (`output.yaml`)
//! holds the same mappings as items of a block sequence (`- {...}`). They look like JSON but
//! are not quite: some values carry YAML's non-specific tag (`"size": ! "2929664"`) and strings
//! may be single-quoted. This reader handles exactly that subset (mappings, sequences, single- and
//! double-quoted strings with their escapes, plain scalars, `!` tags); anything else is an error,
//! never a panic.

use std::collections::BTreeMap;

/// A parsed flow value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A quoted string or a plain scalar (numbers, `null`, `true` stay text).
    Str(String),
    /// `{key: value, ...}`.
    Map(BTreeMap<String, Value>),
    /// `[value, ...]`.
    Seq(Vec<Value>),
}

impl Value {
    /// The string of a scalar, `None` for a mapping or sequence.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A mapping's entry.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// A mapping entry's scalar text.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// Why a line is not a flow value this reader understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flow YAML, byte {at}: {what}")]
pub struct FlowError {
    /// Byte offset in the line.
    pub at: usize,
    /// What was expected.
    pub what: &'static str,
}

struct Reader<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Reader<'_> {
    fn err(&self, what: &'static str) -> FlowError {
        FlowError { at: self.i, what }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value, FlowError> {
        if depth > 32 {
            return Err(self.err("nesting deeper than 32"));
        }
        self.ws();
        // YAML's non-specific tag `!` (or a named one, `!tag`): the value follows.
        if self.peek() == Some(b'!') {
            while self.i < self.s.len() && !matches!(self.s[self.i], b' ' | b'\t') {
                self.i += 1;
            }
            self.ws();
        }
        match self.peek() {
            Some(b'{') => self.map(depth),
            Some(b'[') => self.seq(depth),
            Some(b'"') => self.double().map(Value::Str),
            Some(b'\'') => self.single().map(Value::Str),
            Some(_) => Ok(Value::Str(self.plain())),
            None => Err(self.err("a value")),
        }
    }

    fn map(&mut self, depth: usize) -> Result<Value, FlowError> {
        self.i += 1;
        let mut m = BTreeMap::new();
        loop {
            self.ws();
            match self.peek() {
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Map(m));
                }
                Some(b',') => {
                    self.i += 1;
                    continue;
                }
                None => return Err(self.err("`}`")),
                _ => {}
            }
            let key = match self.value(depth + 1)? {
                Value::Str(k) => k,
                _ => return Err(self.err("a scalar key")),
            };
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("`:` after a key"));
            }
            self.i += 1;
            let v = self.value(depth + 1)?;
            m.insert(key, v);
        }
    }

    fn seq(&mut self, depth: usize) -> Result<Value, FlowError> {
        self.i += 1;
        let mut v = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Seq(v));
                }
                Some(b',') => self.i += 1,
                None => return Err(self.err("`]`")),
                _ => v.push(self.value(depth + 1)?),
            }
        }
    }

    fn double(&mut self) -> Result<String, FlowError> {
        self.i += 1;
        let mut out = String::new();
        let mut start = self.i;
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    out.push_str(&self.text[start..self.i]);
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[start..self.i]);
                    self.i += 1;
                    let e = self.peek().ok_or_else(|| self.err("an escape"))?;
                    self.i += 1;
                    match e {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'0' => out.push('\0'),
                        b'e' => out.push('\u{1b}'),
                        b'a' => out.push('\u{7}'),
                        b'b' => out.push('\u{8}'),
                        b'/' | b'\\' | b'"' | b' ' => out.push(e as char),
                        b'x' | b'u' | b'U' => {
                            let n = match e {
                                b'x' => 2,
                                b'u' => 4,
                                _ => 8,
                            };
                            let hex = self
                                .text
                                .get(self.i..self.i + n)
                                .ok_or_else(|| self.err("hex digits"))?;
                            let code =
                                u32::from_str_radix(hex, 16).map_err(|_| self.err("hex digits"))?;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            self.i += n;
                        }
                        _ => return Err(self.err("a known escape")),
                    }
                    start = self.i;
                }
                _ => self.i += 1,
            }
        }
        Err(self.err("a closing `\"`"))
    }

    fn single(&mut self) -> Result<String, FlowError> {
        self.i += 1;
        let mut out = String::new();
        let mut start = self.i;
        while let Some(c) = self.peek() {
            if c == b'\'' {
                out.push_str(&self.text[start..self.i]);
                self.i += 1;
                if self.peek() == Some(b'\'') {
                    out.push('\'');
                    self.i += 1;
                    start = self.i;
                    continue;
                }
                return Ok(out);
            }
            self.i += 1;
        }
        Err(self.err("a closing `'`"))
    }

    /// A plain scalar inside a flow collection ends at `,`, `}`, `]` or `: `.
    fn plain(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            let colon_end = c == b':'
                && matches!(
                    self.s.get(self.i + 1),
                    None | Some(b' ' | b',' | b'}' | b']')
                );
            if matches!(c, b',' | b'}' | b']') || colon_end {
                break;
            }
            self.i += 1;
        }
        self.text[start..self.i].trim().to_string()
    }
}

/// Parses one flow value (a log line); a leading `- ` (block sequence item) is accepted.
pub fn parse(line: &str) -> Result<Value, FlowError> {
    let trimmed = line.trim();
    let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
    let offset = line.len() - line.trim_start().len() + (trimmed.len() - body.len());
    let mut r = Reader {
        s: body.as_bytes(),
        text: body,
        i: 0,
    };
    let v = r.value(0).map_err(|e| FlowError {
        at: e.at + offset,
        ..e
    })?;
    r.ws();
    if r.i != body.len() {
        return Err(FlowError {
            at: r.i + offset,
            what: "end of line",
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lava_run_lines_with_tags_and_nesting() {
        let v = parse(r#"{"dt": "2026-12-03T21:02:43.080142", "lvl": "results", "msg": {"case": "file-download", "extra": {"label": "kernel", "size": ! "2929664"}, "result": "pass"}}"#).unwrap();
        assert_eq!(v.get_str("lvl"), Some("results"));
        let msg = v.get("msg").unwrap();
        assert_eq!(msg.get_str("case"), Some("file-download"));
        assert_eq!(msg.get("extra").unwrap().get_str("size"), Some("2929664"));
    }

    #[test]
    fn server_log_items_escapes_and_plain_scalars() {
        let v = parse(
            r#"- {dt: '2026-12-03', lvl: target, msg: "a\tb \"q\" \u00e9\r", n: [1, 'it''s']}"#,
        )
        .unwrap();
        assert_eq!(v.get_str("dt"), Some("2026-12-03"));
        assert_eq!(v.get_str("lvl"), Some("target"));
        assert_eq!(v.get_str("msg"), Some("a\tb \"q\" \u{e9}\r"));
        assert_eq!(
            v.get("n"),
            Some(&Value::Seq(vec![
                Value::Str("1".into()),
                Value::Str("it's".into())
            ]))
        );
        // A URL in a plain scalar keeps its colon.
        let v = parse("{url: http://x:80/a, b: c}").unwrap();
        assert_eq!(v.get_str("url"), Some("http://x:80/a"));
    }

    #[test]
    fn broken_lines_are_errors_not_panics() {
        for bad in [
            "{\"a\": \"b\"",
            "{\"a\" \"b\"}",
            "{\"a\": \"\\q\"}",
            "{\"a\": \"\\u12\"}",
            "[1, 2",
            "{\"a\": 1} trailing",
            "",
            "'open",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "[".repeat(100);
        assert!(parse(&deep).is_err());
    }
}
