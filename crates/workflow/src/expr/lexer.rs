//! Tokens of the `${{ }}` expression language.

use super::ExprError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Ident(String),
    Dot,
    Star,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Not,
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A token and its byte offset in the expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub offset: usize,
}

pub fn tokenize(src: &str) -> Result<Vec<Spanned>, ExprError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let simple = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'.' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
                || tokens.last().is_some_and(|t: &Spanned| ends_operand(&t.token)) =>
            {
                Some((Token::Dot, 1))
            }
            b'*' => Some((Token::Star, 1)),
            b',' => Some((Token::Comma, 1)),
            b'(' => Some((Token::LParen, 1)),
            b')' => Some((Token::RParen, 1)),
            b'[' => Some((Token::LBracket, 1)),
            b']' => Some((Token::RBracket, 1)),
            b'!' if bytes.get(i + 1) == Some(&b'=') => Some((Token::Ne, 2)),
            b'!' => Some((Token::Not, 1)),
            b'=' if bytes.get(i + 1) == Some(&b'=') => Some((Token::Eq, 2)),
            b'<' if bytes.get(i + 1) == Some(&b'=') => Some((Token::Le, 2)),
            b'<' => Some((Token::Lt, 1)),
            b'>' if bytes.get(i + 1) == Some(&b'=') => Some((Token::Ge, 2)),
            b'>' => Some((Token::Gt, 1)),
            b'&' if bytes.get(i + 1) == Some(&b'&') => Some((Token::And, 2)),
            b'|' if bytes.get(i + 1) == Some(&b'|') => Some((Token::Or, 2)),
            _ => None,
        };
        if let Some((token, len)) = simple {
            tokens.push(Spanned { token, offset: start });
            i += len;
            continue;
        }
        if c == b'\'' {
            let mut value = String::new();
            i += 1;
            loop {
                match src[i..].find('\'') {
                    None => {
                        return Err(ExprError::new(start, "unterminated string literal"));
                    }
                    Some(rel) => {
                        value.push_str(&src[i..i + rel]);
                        i += rel + 1;
                        if bytes.get(i) == Some(&b'\'') {
                            value.push('\'');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            tokens.push(Spanned { token: Token::String(value), offset: start });
            continue;
        }
        let after_operand = tokens.last().is_some_and(|t| ends_operand(&t.token));
        if c.is_ascii_digit() || c == b'.' || (c == b'-' && !after_operand) || (c == b'+' && !after_operand) {
            let mut j = i + 1;
            while j < bytes.len()
                && (bytes[j].is_ascii_alphanumeric()
                    || bytes[j] == b'.'
                    || ((bytes[j] == b'-' || bytes[j] == b'+')
                        && matches!(bytes[j - 1], b'e' | b'E')
                        && !src[i..j].starts_with("0x")))
            {
                j += 1;
            }
            let text = &src[i..j];
            let number = parse_number_literal(text)
                .ok_or_else(|| ExprError::new(start, format!("unexpected symbol: '{text}'")))?;
            tokens.push(Spanned { token: Token::Number(number), offset: start });
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'-') {
                j += 1;
            }
            let word = &src[i..j];
            let after_dot = matches!(tokens.last(), Some(Spanned { token: Token::Dot, .. }));
            let token = if after_dot {
                Token::Ident(word.to_string())
            } else {
                match word {
                    "null" => Token::Null,
                    "true" => Token::Bool(true),
                    "false" => Token::Bool(false),
                    "NaN" => Token::Number(f64::NAN),
                    "Infinity" => Token::Number(f64::INFINITY),
                    _ => Token::Ident(word.to_string()),
                }
            };
            tokens.push(Spanned { token, offset: start });
            i = j;
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('?');
        return Err(ExprError::new(start, format!("unexpected symbol: '{ch}'")));
    }
    Ok(tokens)
}

fn ends_operand(token: &Token) -> bool {
    matches!(
        token,
        Token::Null
            | Token::Bool(_)
            | Token::Number(_)
            | Token::String(_)
            | Token::Ident(_)
            | Token::RParen
            | Token::RBracket
            | Token::Star
    )
}

fn parse_number_literal(text: &str) -> Option<f64> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else if let Some(oct) = body.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()? as f64
    } else if body == "Infinity" {
        f64::INFINITY
    } else {
        if body.is_empty() || body.bytes().any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if negative { -value } else { value })
}
