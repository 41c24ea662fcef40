//! A small SOQL subset: `SELECT f1, f2 FROM Obj [WHERE cond [AND cond]...] [ORDER BY Id [ASC|DESC]]
//! [LIMIT n]`, where a condition compares one field to a literal with `=`, `!=`, `<>`, `<`, `<=`,
//! `>` or `>=`, or to a list with `IN ('a', 'b')`. Only `Id` can be ordered on: the simulator keeps every object's rows in id order
//! (ids are handed out in ascending order), which is what slicing an object by id needs.
//!
//! Anything else (OR, parentheses, functions, relationship paths, ORDER BY another field,
//! subqueries) is rejected with `MALFORMED_QUERY` naming the unsupported construct, rather than
//! silently mis-answered.

use std::cmp::Ordering;

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::data::Row;
use crate::schema::{FieldDef, ObjectDef};

/// Why a query was refused: a Salesforce error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The errorCode Salesforce would return.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl QueryError {
    fn malformed(message: impl Into<String>) -> Self {
        QueryError {
            code: "MALFORMED_QUERY",
            message: message.into(),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `IN (a, b, ...)`
    In,
}

/// A literal on the right of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'`
    Str(String),
    /// `true` / `false`
    Bool(bool),
    /// `null`
    Null,
    /// An unquoted number or dateTime literal.
    Bare(String),
    /// `(a, b, ...)` after `IN`.
    List(Vec<Literal>),
}

/// `field op literal`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Field API name as written.
    pub field: String,
    /// Operator.
    pub op: Op,
    /// Literal.
    pub value: Literal,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The object after FROM, as written.
    pub object: String,
    /// Selected fields, as written, in order.
    pub fields: Vec<String>,
    /// ANDed conditions.
    pub conditions: Vec<Condition>,
    /// `ORDER BY Id DESC` (descending); `ORDER BY Id [ASC]` is the natural order.
    pub descending: bool,
    /// LIMIT, if any.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Comma,
    Str(String),
    Op(Op),
    Paren,
}

fn tokenize(soql: &str) -> Result<Vec<Tok>, QueryError> {
    let chars: Vec<char> = soql.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == ',' {
            toks.push(Tok::Comma);
            i += 1;
        } else if c == '(' || c == ')' {
            toks.push(Tok::Paren);
            i += 1;
        } else if c == '\'' {
            let (s, next) = string_literal(&chars, i + 1)?;
            toks.push(Tok::Str(s));
            i = next;
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let (op, next) = operator(&chars, i)?;
            toks.push(Tok::Op(op));
            i = next;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && is_word_char(chars[i]) {
                i += 1;
            }
            toks.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(QueryError::malformed(format!(
                "unexpected character '{c}' in query"
            )));
        }
    }
    Ok(toks)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '+' | '-')
}

fn string_literal(chars: &[char], mut i: usize) -> Result<(String, usize), QueryError> {
    let mut out = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                out.push(chars[i + 1]);
                i += 2;
            }
            '\'' => return Ok((out, i + 1)),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(QueryError::malformed("unterminated string literal"))
}

fn operator(chars: &[char], i: usize) -> Result<(Op, usize), QueryError> {
    let next = chars.get(i + 1).copied();
    match (chars[i], next) {
        ('=', _) => Ok((Op::Eq, i + 1)),
        ('!', Some('=')) => Ok((Op::Ne, i + 2)),
        ('<', Some('>')) => Ok((Op::Ne, i + 2)),
        ('<', Some('=')) => Ok((Op::Le, i + 2)),
        ('>', Some('=')) => Ok((Op::Ge, i + 2)),
        ('<', _) => Ok((Op::Lt, i + 1)),
        ('>', _) => Ok((Op::Gt, i + 1)),
        _ => Err(QueryError::malformed("unexpected '!' in query")),
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(QueryError::malformed(format!(
                "expected {kw} near token {}",
                self.pos + 1
            )))
        }
    }

    fn word(&mut self, what: &str) -> Result<String, QueryError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            Some(Tok::Paren) => Err(unsupported("functions and parentheses")),
            _ => Err(QueryError::malformed(format!("expected {what}"))),
        }
    }
}

fn unsupported(what: &str) -> QueryError {
    QueryError::malformed(format!("{what} are not supported by coffer-sfsim"))
}

/// Parses `soql`.
pub fn parse(soql: &str) -> Result<Query, QueryError> {
    let mut p = Parser {
        toks: tokenize(soql)?,
        pos: 0,
    };
    p.expect_keyword("SELECT")?;
    let fields = select_list(&mut p)?;
    let object = p.word("an object name after FROM")?;
    let mut conditions = Vec::new();
    if p.keyword("WHERE") {
        conditions.push(condition(&mut p)?);
        while p.keyword("AND") {
            conditions.push(condition(&mut p)?);
        }
    }
    let descending = if p.keyword("ORDER") {
        order_by(&mut p)?
    } else {
        false
    };
    let limit = if p.keyword("LIMIT") {
        Some(limit(&mut p)?)
    } else {
        None
    };
    match p.next() {
        None => Ok(Query {
            object,
            fields,
            conditions,
            descending,
            limit,
        }),
        Some(Tok::Word(w))
            if ["OR", "ORDER", "GROUP", "OFFSET", "HAVING"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            Err(unsupported(&format!("{} clauses", w.to_uppercase())))
        }
        Some(_) => Err(QueryError::malformed(
            "unexpected token after the end of the query",
        )),
    }
}

fn select_list(p: &mut Parser) -> Result<Vec<String>, QueryError> {
    let mut fields = vec![p.word("a field name")?];
    loop {
        match p.next() {
            Some(Tok::Comma) => fields.push(p.word("a field name")?),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("FROM") => return Ok(fields),
            Some(Tok::Paren) => return Err(unsupported("functions and subqueries")),
            _ => return Err(QueryError::malformed("expected ',' or FROM after a field")),
        }
    }
}

fn condition(p: &mut Parser) -> Result<Condition, QueryError> {
    let field = p.word("a field name in WHERE")?;
    let op = match p.next() {
        Some(Tok::Op(op)) => op,
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => {
            return Ok(Condition {
                field,
                op: Op::In,
                value: Literal::List(in_list(p)?),
            });
        }
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("LIKE") => {
            return Err(unsupported("LIKE operators"));
        }
        _ => return Err(QueryError::malformed("expected a comparison operator")),
    };
    let value = literal(p)?;
    Ok(Condition { field, op, value })
}

/// `('a', 'b', ...)` after `IN`.
fn in_list(p: &mut Parser) -> Result<Vec<Literal>, QueryError> {
    let malformed = || QueryError::malformed("IN needs a parenthesised list of literals");
    if p.next() != Some(Tok::Paren) {
        return Err(malformed());
    }
    let mut values = vec![literal(p)?];
    loop {
        match p.next() {
            Some(Tok::Comma) => values.push(literal(p)?),
            Some(Tok::Paren) => return Ok(values),
            _ => return Err(malformed()),
        }
    }
}

/// One literal: `'text'`, `true`, `false`, `null`, or a bare number or dateTime.
fn literal(p: &mut Parser) -> Result<Literal, QueryError> {
    let value = match p.next() {
        Some(Tok::Str(s)) => Literal::Str(s),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
        Some(Tok::Word(w)) => Literal::Bare(w),
        _ => {
            return Err(QueryError::malformed(
                "expected a literal after the operator",
            ));
        }
    };
    Ok(value)
}

/// `BY Id [ASC|DESC]` after `ORDER`; whether it is descending.
fn order_by(p: &mut Parser) -> Result<bool, QueryError> {
    p.expect_keyword("BY")?;
    let field = p.word("a field after ORDER BY")?;
    if !field.eq_ignore_ascii_case("Id") {
        return Err(unsupported("ORDER BY fields other than Id"));
    }
    if p.keyword("DESC") {
        return Ok(true);
    }
    let _ = p.keyword("ASC");
    Ok(false)
}

fn limit(p: &mut Parser) -> Result<usize, QueryError> {
    match p.next() {
        Some(Tok::Word(w)) => w
            .parse()
            .map_err(|_| QueryError::malformed("LIMIT needs a number")),
        _ => Err(QueryError::malformed("LIMIT needs a number")),
    }
}

/// A condition checked against one object's fields, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Filter {
    field: usize,
    op: Op,
    value: Typed,
}

#[derive(Debug, Clone)]
enum Typed {
    Null,
    Text(String),
    /// A 15-character id compared with an id or reference field: Salesforce accepts both id
    /// forms, so the stored 18-character id is compared on its first 15 characters.
    Id15(String),
    /// The values of an `IN` list.
    List(Vec<Typed>),
    Bool(bool),
    Number(f64),
    DateTime(OffsetDateTime),
}

/// Checks `cond` against `object`'s fields and types.
pub fn compile(object: &ObjectDef, cond: &Condition) -> Result<Filter, QueryError> {
    let index = object
        .fields
        .iter()
        .position(|f| f.name.eq_ignore_ascii_case(&cond.field))
        .ok_or_else(|| no_such_column(object, &cond.field))?;
    let field = &object.fields[index];
    let value = match &cond.value {
        Literal::List(values) => Typed::List(
            values
                .iter()
                .map(|v| typed_literal(field, v))
                .collect::<Result<_, _>>()?,
        ),
        single => typed_literal(field, single)?,
    };
    let ordering_ok = matches!(cond.op, Op::Eq | Op::Ne | Op::In)
        || !matches!(value, Typed::Null | Typed::Bool(_));
    if !ordering_ok {
        return Err(QueryError {
            code: "INVALID_QUERY_FILTER_OPERATOR",
            message: format!("invalid operator on field {} for this value", field.name),
        });
    }
    Ok(Filter {
        field: index,
        op: cond.op,
        value,
    })
}

/// The INVALID_FIELD error Salesforce gives for an unknown column.
pub fn no_such_column(object: &ObjectDef, field: &str) -> QueryError {
    QueryError {
        code: "INVALID_FIELD",
        message: format!(
            "No such column '{field}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
            object.name
        ),
    }
}

fn typed_literal(field: &FieldDef, lit: &Literal) -> Result<Typed, QueryError> {
    let mismatch = || QueryError {
        code: "INVALID_FIELD",
        message: format!(
            "value of filter criterion for field '{}' must be of type {} and should not be enclosed in quotes",
            field.name, field.ftype
        ),
    };
    match (field.ftype, lit) {
        (_, Literal::Null) => Ok(Typed::Null),
        ("id" | "reference", Literal::Str(s)) if s.len() == 15 => Ok(Typed::Id15(s.clone())),
        ("boolean", Literal::Bool(b)) => Ok(Typed::Bool(*b)),
        ("datetime", Literal::Bare(s)) => {
            parse_datetime(s).map(Typed::DateTime).ok_or_else(mismatch)
        }
        ("date", Literal::Bare(s)) if is_date(s) => Ok(Typed::Text(s.clone())),
        ("currency" | "double" | "int" | "percent", Literal::Bare(s)) => {
            s.parse().map(Typed::Number).map_err(|_| mismatch())
        }
        ("boolean" | "datetime" | "date" | "currency" | "double" | "int" | "percent", _) => {
            Err(mismatch())
        }
        (_, Literal::Str(s)) => Ok(Typed::Text(s.clone())),
        _ => Err(mismatch()),
    }
}

/// Whether `s` is a SOQL date literal, `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    time::Date::parse(s, format_description!("[year]-[month]-[day]")).is_ok()
}

/// Parses a SOQL/Bulk dateTime: `2024-05-01T12:34:56Z`, with optional `.SSS`, and an offset of
/// `Z`, `+HH:MM` or `+HHMM`.
pub fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    let base = PrimitiveDateTime::parse(
        s.get(..19)?,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .ok()?;
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.chars().take_while(char::is_ascii_digit).count();
        millis = frac.get(..digits.min(3))?.parse::<u16>().unwrap_or(0);
        rest = &frac[digits..];
    }
    let offset = parse_offset(rest)?;
    let with_ms = base.replace_millisecond(millis).ok()?;
    Some(with_ms.assume_offset(offset))
}

fn parse_offset(s: &str) -> Option<UtcOffset> {
    if s == "Z" {
        return Some(UtcOffset::UTC);
    }
    let sign = match s.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits[2..].parse().ok()?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

impl Filter {
    /// Whether `row` (cells in describe order) satisfies the condition.
    pub fn matches(&self, row: &Row) -> bool {
        let value = row.get(self.field).and_then(Option::as_deref);
        if let Typed::List(values) = &self.value {
            return values
                .iter()
                .any(|v| compare(v, value) == Some(Ordering::Equal));
        }
        let ordering = compare(&self.value, value);
        match (self.op, ordering) {
            (Op::Ne, None) => true,
            (_, None) => false,
            (Op::Eq | Op::In, Some(o)) => o == Ordering::Equal,
            (Op::Ne, Some(o)) => o != Ordering::Equal,
            (Op::Lt, Some(o)) => o == Ordering::Less,
            (Op::Le, Some(o)) => o != Ordering::Greater,
            (Op::Gt, Some(o)) => o == Ordering::Greater,
            (Op::Ge, Some(o)) => o != Ordering::Less,
        }
    }
}

/// How a cell compares with a literal (`None`: not comparable, or null).
fn compare(literal: &Typed, value: Option<&str>) -> Option<Ordering> {
    match (literal, value) {
        (Typed::Null, None) => Some(Ordering::Equal),
        (Typed::Null, Some(_)) | (_, None) => None,
        (Typed::Text(t), Some(v)) => Some(v.cmp(t.as_str())),
        (Typed::Id15(t), Some(v)) => Some(v.get(..15).unwrap_or(v).cmp(t.as_str())),
        (Typed::Bool(b), Some(v)) => Some((v == "true").cmp(b)),
        (Typed::Number(n), Some(v)) => v.parse::<f64>().ok().and_then(|x| x.partial_cmp(n)),
        (Typed::DateTime(d), Some(v)) => parse_datetime(v).map(|x| x.cmp(d)),
        (Typed::List(_), Some(_)) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_select_with_where_and_limit() {
        let q = parse("SELECT Id, Name FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00Z AND Id != 'x' LIMIT 5").unwrap();
        assert_eq!(q.fields, vec!["Id", "Name"]);
        assert_eq!(q.object, "Account");
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[1].value, Literal::Str("x".into()));
        assert_eq!(q.limit, Some(5));
    }

    #[test]
    fn rejects_unsupported_constructs_clearly() {
        for bad in [
            "SELECT COUNT() FROM Account",
            "SELECT Id FROM Account WHERE Name = 'a' OR Name = 'b'",
            "SELECT Id FROM Account WHERE Name IN 'a'",
            "SELECT Id FROM Account WHERE Name LIKE 'a%'",
            "SELECT Id FROM Account ORDER BY Name DESC",
            "SELECT Id Account",
            "SELECT Id, FROM Account",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.code, "MALFORMED_QUERY", "{bad}");
        }
    }

    #[test]
    fn datetimes_parse_in_all_documented_shapes() {
        let a = parse_datetime("2024-05-01T12:34:56.000+0000").unwrap();
        let b = parse_datetime("2024-05-01T12:34:56Z").unwrap();
        let c = parse_datetime("2024-05-01T14:34:56+02:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
    }
}
