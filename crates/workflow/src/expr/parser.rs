//! Recursive-descent parser of the expression grammar, with GitHub's operator precedence.

use super::lexer::{tokenize, Spanned, Token};
use super::{Expr, ExprError};

/// The contexts an expression may name at its top level.
pub const CONTEXTS: &[&str] =
    &["github", "env", "vars", "secrets", "inputs", "matrix", "strategy", "needs", "steps", "job", "jobs", "runner"];

/// Functions with their minimum and maximum argument counts.
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("contains", 2, 2),
    ("startswith", 2, 2),
    ("endswith", 2, 2),
    ("format", 1, usize::MAX),
    ("join", 1, 2),
    ("tojson", 1, 1),
    ("fromjson", 1, 1),
    ("hashfiles", 1, usize::MAX),
    ("success", 0, 0),
    ("always", 0, 0),
    ("cancelled", 0, 0),
    ("failure", 0, 0),
];

/// Parses one expression (the text between `${{` and `}}`).
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let tokens = tokenize(src)?;
    if tokens.is_empty() {
        return Err(ExprError::new(0, "expected an expression"));
    }
    let mut parser = Parser { tokens, pos: 0, src_len: src.len(), depth: 0 };
    let expr = parser.or()?;
    if let Some(extra) = parser.tokens.get(parser.pos) {
        return Err(ExprError::new(extra.offset, format!("unexpected symbol: '{}'", describe(&extra.token))));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Spanned>,
    pos: usize,
    src_len: usize,
    depth: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Null => "null".into(),
        Token::Bool(b) => b.to_string(),
        Token::Number(n) => n.to_string(),
        Token::String(s) => format!("'{s}'"),
        Token::Ident(s) => s.clone(),
        Token::Dot => ".".into(),
        Token::Star => "*".into(),
        Token::Comma => ",".into(),
        Token::LParen => "(".into(),
        Token::RParen => ")".into(),
        Token::LBracket => "[".into(),
        Token::RBracket => "]".into(),
        Token::Not => "!".into(),
        Token::And => "&&".into(),
        Token::Or => "||".into(),
        Token::Eq => "==".into(),
        Token::Ne => "!=".into(),
        Token::Lt => "<".into(),
        Token::Le => "<=".into(),
        Token::Gt => ">".into(),
        Token::Ge => ">=".into(),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.token)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.src_len, |t| t.offset)
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &Token) -> Result<(), ExprError> {
        if self.eat(token) {
            Ok(())
        } else {
            let found = self.peek().map_or("end of expression".to_string(), |t| format!("'{}'", describe(t)));
            Err(ExprError::new(self.offset(), format!("expected '{}', found {found}", describe(token))))
        }
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(ExprError::new(self.offset(), "expression nested too deeply"));
        }
        let mut left = self.and()?;
        while self.eat(&Token::Or) {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.equality()?;
        while self.eat(&Token::And) {
            let right = self.equality()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.comparison()?;
        loop {
            let op = match self.peek() {
                Some(Token::Eq) => super::BinOp::Eq,
                Some(Token::Ne) => super::BinOp::Ne,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.comparison()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::Lt) => super::BinOp::Lt,
                Some(Token::Le) => super::BinOp::Le,
                Some(Token::Gt) => super::BinOp::Gt,
                Some(Token::Ge) => super::BinOp::Ge,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.eat(&Token::Not) {
            let inner = self.unary()?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ExprError> {
        let mut expr = self.primary()?;
        loop {
            if self.eat(&Token::Dot) {
                match self.peek().cloned() {
                    Some(Token::Star) => {
                        self.pos += 1;
                        expr = Expr::Filter(Box::new(expr));
                    }
                    Some(Token::Ident(name)) => {
                        self.pos += 1;
                        expr = Expr::Property(Box::new(expr), name);
                    }
                    // `null`, `true` and friends are lexed as keywords, but are fine property names.
                    Some(Token::Null) => {
                        self.pos += 1;
                        expr = Expr::Property(Box::new(expr), "null".into());
                    }
                    Some(Token::Bool(b)) => {
                        self.pos += 1;
                        expr = Expr::Property(Box::new(expr), b.to_string());
                    }
                    _ => return Err(ExprError::new(self.offset(), "expected a property name after '.'")),
                }
            } else if self.eat(&Token::LBracket) {
                if self.eat(&Token::Star) {
                    self.expect(&Token::RBracket)?;
                    expr = Expr::Filter(Box::new(expr));
                } else {
                    let index = self.or()?;
                    self.expect(&Token::RBracket)?;
                    expr = Expr::Index(Box::new(expr), Box::new(index));
                }
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let offset = self.offset();
        let Some(token) = self.peek().cloned() else {
            return Err(ExprError::new(offset, "unexpected end of expression"));
        };
        self.pos += 1;
        match token {
            Token::Null => Ok(Expr::Null),
            Token::Bool(b) => Ok(Expr::Bool(b)),
            Token::Number(n) => Ok(Expr::Number(n)),
            Token::String(s) => Ok(Expr::String(s)),
            Token::LParen => {
                let inner = self.or()?;
                self.expect(&Token::RParen)?;
                Ok(inner)
            }
            Token::Ident(name) => {
                if self.eat(&Token::LParen) {
                    let lower = name.to_ascii_lowercase();
                    let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(f, _, _)| *f == lower) else {
                        return Err(ExprError::new(offset, format!("unrecognized function: '{name}'")));
                    };
                    let mut args = Vec::new();
                    if !self.eat(&Token::RParen) {
                        loop {
                            args.push(self.or()?);
                            if self.eat(&Token::RParen) {
                                break;
                            }
                            self.expect(&Token::Comma)?;
                        }
                    }
                    if args.len() < min || args.len() > max {
                        let expected = if min == max {
                            format!("{min}")
                        } else if max == usize::MAX {
                            format!("at least {min}")
                        } else {
                            format!("{min} to {max}")
                        };
                        return Err(ExprError::new(
                            offset,
                            format!("function '{name}' takes {expected} argument(s), got {}", args.len()),
                        ));
                    }
                    Ok(Expr::Call(lower, args))
                } else {
                    let lower = name.to_ascii_lowercase();
                    if !CONTEXTS.contains(&lower.as_str()) {
                        return Err(ExprError::new(offset, format!("unrecognized named-value: '{name}'")));
                    }
                    Ok(Expr::Context(lower))
                }
            }
            other => Err(ExprError::new(offset, format!("unexpected symbol: '{}'", describe(&other)))),
        }
    }
}
