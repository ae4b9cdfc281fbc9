//! The price table `curfew ui --prices FILE` reads: what one instance-hour of each instance type
//! costs, in one currency. Savings are priced only from it, never from a guess: a target whose
//! instance types are unknown, unlisted or priced differently from each other stays unpriced.
//!
//! The file is TOML:
//!
//! ```toml
//! currency = "USD"
//!
//! [prices]
//! "m5.large" = 0.096
//! t3.micro = 0.0104     # a bare dotted key means the same
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml_edit::{Document, Item, Table, Value};

/// Why a price file was not read. Each names the file, and the line and field when there is one.
#[derive(Debug, thiserror::Error)]
pub enum PriceFileError {
    /// The file could not be read.
    #[error("reading the price file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the price file {}, line {line}, column {column}: not TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A field is missing, unknown or holds the wrong thing.
    #[error("the price file {}{}, field {field}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line, when the field is in the file.
        line: Option<usize>,
        /// The field, e.g. `currency` or `prices.m5.large`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Prices per instance-hour by instance type, in one currency.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceTable {
    currency: String,
    prices: BTreeMap<String, f64>,
}

/// Why an asleep stretch has no money: its hours count, its money does not.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unpriced {
    /// Discovery found no instance type for the target (see docs/UI.md for when).
    NoInstanceType,
    /// These types are not in the price table.
    NoPrice(Vec<String>),
    /// Its types are priced differently, so an instance-hour has no single price.
    MixedPrices(Vec<String>),
}

impl fmt::Display for Unpriced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unpriced::NoInstanceType => f.write_str("instance type not known"),
            Unpriced::NoPrice(types) => write!(f, "no price for {}", types.join(", ")),
            Unpriced::MixedPrices(types) => write!(
                f,
                "mixed prices ({}): an instance-hour has no single price",
                types.join(", ")
            ),
        }
    }
}

impl Serialize for Unpriced {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl PriceTable {
    /// Reads and checks the price file at `path`.
    pub fn load(path: &Path) -> Result<PriceTable, PriceFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PriceTable::parse(&text, path)
    }

    /// Parses a price file's `text` (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<PriceTable, PriceFileError> {
        let doc = Document::parse(text).map_err(|e| {
            let (line, column) = position(text, e.span().map_or(0, |s| s.start));
            PriceFileError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().replace('\n', " "),
            }
        })?;
        let field =
            |span: Option<Range<usize>>, field: &str, message: String| PriceFileError::Field {
                path: path.to_path_buf(),
                line: span.map(|s| position(text, s.start).0),
                field: field.to_string(),
                message,
            };
        let root = doc.as_table();
        for (key, _) in root.iter() {
            if key != "currency" && key != "prices" {
                return Err(field(
                    root.key(key).and_then(|k| k.span()),
                    key,
                    "unknown field (a price file has `currency` and a `[prices]` table)".into(),
                ));
            }
        }
        let currency = match root.get("currency") {
            None => {
                return Err(field(
                    None,
                    "currency",
                    "missing: say which currency the prices are in, e.g. currency = \"USD\"".into(),
                ))
            }
            Some(item) => match item.as_str().map(str::trim) {
                Some(c) if !c.is_empty() && c.len() <= 16 && !c.contains(char::is_control) => {
                    c.to_string()
                }
                _ => {
                    return Err(field(
                        item.span(),
                        "currency",
                        "must be a short text such as \"USD\" or \"EUR\"".into(),
                    ))
                }
            },
        };
        let Some(item) = root.get("prices") else {
            return Err(field(
                None,
                "prices",
                "missing: a [prices] table of instance type = price per instance-hour".into(),
            ));
        };
        let Some(table) = item.as_table() else {
            return Err(field(
                item.span(),
                "prices",
                "must be a table: [prices] then lines such as \"m5.large\" = 0.096".into(),
            ));
        };
        let mut prices = BTreeMap::new();
        collect(table, "", &currency, &mut prices, &field)?;
        if prices.is_empty() {
            return Err(field(
                table.span(),
                "prices",
                "lists no instance type: add lines such as \"m5.large\" = 0.096".into(),
            ));
        }
        Ok(PriceTable { currency, prices })
    }

    /// The currency the prices are in.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The price of one instance-hour of a target running `instance_types`: known only when
    /// every type has a price and all the prices are the same.
    pub fn price(&self, instance_types: &[String]) -> Result<f64, Unpriced> {
        if instance_types.is_empty() {
            return Err(Unpriced::NoInstanceType);
        }
        let missing: Vec<String> = instance_types
            .iter()
            .filter(|t| !self.prices.contains_key(*t))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Unpriced::NoPrice(missing));
        }
        let first = self.prices[&instance_types[0]];
        if instance_types.iter().any(|t| self.prices[t] != first) {
            return Err(Unpriced::MixedPrices(
                instance_types
                    .iter()
                    .map(|t| format!("{t} {}", self.prices[t]))
                    .collect(),
            ));
        }
        Ok(first)
    }
}

/// The entries of `table` into `prices`, a dotted key (`t3.micro = 0.0104`, which TOML reads as
/// a table `t3` holding `micro`) joined back into its instance type.
fn collect<E>(
    table: &Table,
    prefix: &str,
    currency: &str,
    prices: &mut BTreeMap<String, f64>,
    field: &impl Fn(Option<Range<usize>>, &str, String) -> E,
) -> Result<(), E> {
    for (key, item) in table.iter() {
        let name = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        let span = table
            .key(key)
            .and_then(|k| k.span())
            .or_else(|| item.span());
        let path = format!("prices.{name}");
        let price = match item {
            Item::Table(inner) => {
                collect(inner, &name, currency, prices, field)?;
                continue;
            }
            Item::Value(Value::Float(f)) => *f.value(),
            Item::Value(Value::Integer(i)) => *i.value() as f64,
            Item::Value(v) => {
                return Err(field(
                    span,
                    &path,
                    format!(
                        "a price must be a number of {currency} per instance-hour, not {}",
                        v.type_name()
                    ),
                ))
            }
            _ => {
                return Err(field(
                    span,
                    &path,
                    format!("a price must be a number of {currency} per instance-hour"),
                ))
            }
        };
        if !is_instance_type(&name) {
            return Err(field(
                span,
                &path,
                format!("{name:?} is not an instance type (family.size, e.g. m5.large)"),
            ));
        }
        if !price.is_finite() || price < 0.0 {
            return Err(field(
                span,
                &path,
                format!(
                    "{price} is not a price: a number of {currency} per instance-hour, 0 or more"
                ),
            ));
        }
        if prices.insert(name.clone(), price).is_some() {
            return Err(field(span, &path, format!("{name} is priced twice")));
        }
    }
    Ok(())
}

/// `family.size` in lower case, as EC2 names its types (`m5.large`, `u-6tb1.112xlarge`).
fn is_instance_type(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    matches!(name.split_once('.'), Some((family, size)) if part(family) && part(size))
}

/// 1-based line and column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PriceTable, PriceFileError> {
        PriceTable::parse(text, Path::new("prices.toml"))
    }

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    const TABLE: &str = r#"# On-Demand, Linux, eu-west-1
currency = "USD"

[prices]
"m5.large" = 0.107
m5a.large = 0.096
t3.micro = 0.0114
t3a.micro = 0.0114
t3.medium = 0.0456
c5.metal = 4
"#;

    #[test]
    fn quoted_and_bare_dotted_instance_types_both_read_as_the_type() {
        let table = parse(TABLE).unwrap();
        assert_eq!(table.currency(), "USD");
        assert_eq!(table.price(&types(&["m5.large"])), Ok(0.107));
        assert_eq!(table.price(&types(&["m5a.large"])), Ok(0.096));
        assert_eq!(table.price(&types(&["c5.metal"])), Ok(4.0));
        assert_eq!(table.price(&types(&["t3.medium"])), Ok(0.0456));
    }

    #[test]
    fn a_target_of_several_types_at_one_price_is_priced() {
        let table = parse(TABLE).unwrap();
        assert_eq!(table.price(&types(&["t3.micro", "t3a.micro"])), Ok(0.0114));
    }

    #[test]
    fn a_type_without_a_price_leaves_the_target_unpriced_and_named() {
        let table = parse(TABLE).unwrap();
        assert_eq!(
            table.price(&types(&["t3.micro", "r6g.large"])),
            Err(Unpriced::NoPrice(types(&["r6g.large"])))
        );
        assert_eq!(table.price(&[]), Err(Unpriced::NoInstanceType));
    }

    #[test]
    fn types_at_different_prices_are_not_priced_and_say_so() {
        let table = parse(TABLE).unwrap();
        let err = table.price(&types(&["m5.large", "m5a.large"])).unwrap_err();
        assert!(matches!(err, Unpriced::MixedPrices(_)));
        assert_eq!(
            err.to_string(),
            "mixed prices (m5.large 0.107, m5a.large 0.096): an instance-hour has no single price"
        );
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_price_that_is_not_a_number_is_named_by_line_and_field() {
        let text = "currency = \"EUR\"\n[prices]\nm5.large = 0.1\n\"t3.micro\" = \"cheap\"\n";
        assert_eq!(
            error(text),
            "the price file prices.toml, line 4, field prices.t3.micro: a price must be a number of EUR per instance-hour, not string"
        );
    }

    #[test]
    fn a_negative_price_and_a_name_that_is_no_instance_type_are_refused() {
        let negative = "currency = \"USD\"\n[prices]\nm5.large = -1\n";
        assert_eq!(
            error(negative),
            "the price file prices.toml, line 3, field prices.m5.large: -1 is not a price: a number of USD per instance-hour, 0 or more"
        );
        let typo = "currency = \"USD\"\n[prices]\nm5.large = 0.1\nm5large = 0.1\n";
        assert_eq!(
            error(typo),
            "the price file prices.toml, line 4, field prices.m5large: \"m5large\" is not an instance type (family.size, e.g. m5.large)"
        );
    }

    #[test]
    fn a_missing_currency_or_an_unknown_field_is_named() {
        assert_eq!(
            error("[prices]\nm5.large = 0.1\n"),
            "the price file prices.toml, field currency: missing: say which currency the prices are in, e.g. currency = \"USD\""
        );
        assert_eq!(
            error("currency = \"USD\"\nregion = \"eu-west-1\"\n[prices]\nm5.large = 0.1\n"),
            "the price file prices.toml, line 2, field region: unknown field (a price file has `currency` and a `[prices]` table)"
        );
        assert!(error("currency = \"USD\"\n[prices]\n")
            .contains("field prices: lists no instance type"));
    }

    #[test]
    fn a_type_priced_twice_is_refused() {
        let text = "currency = \"USD\"\n[prices]\n\"m5.large\" = 0.1\nm5.large = 0.2\n";
        assert_eq!(
            error(text),
            "the price file prices.toml, line 4, field prices.m5.large: m5.large is priced twice"
        );
    }

    #[test]
    fn a_file_that_is_not_toml_is_named_by_line_and_column() {
        let text = "currency = \"USD\"\n[prices]\nm5.large = \n";
        let message = error(text);
        assert!(
            message.starts_with("the price file prices.toml, line 3, column "),
            "{message}"
        );
        assert!(message.contains("not TOML"), "{message}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = PriceTable::load(Path::new("/nonexistent/prices.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading the price file /nonexistent/prices.toml: "),
            "{err}"
        );
    }
}
