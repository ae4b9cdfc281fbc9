//! The size DynamoDB bills an item at, by the rules of the developer guide's "Item sizes and
//! formats": an attribute's name (UTF-8) plus its value — a string's UTF-8 bytes, a binary's
//! bytes, a number's significant digits halved (rounded up) plus one byte, one byte for a
//! Boolean or null, a set's elements added up, and for a list or map 3 bytes plus one byte per
//! element (a map's element names counted too).
//!
//! The cost model (`counting::dynamo`) assumes every item curfew writes is at most 1 KB (one
//! write unit); the emulator tests measure the items a wave really leaves with this, so the
//! assumption is checked, not trusted.
//!
//! ```
//! use aws_sdk_dynamodb::types::AttributeValue;
//! use curfew_tests::item_size::item_size;
//!
//! let item = [("pk".to_string(), AttributeValue::S("TARGET#a".into()))].into();
//! assert_eq!(item_size(&item), 2 + 8);
//! ```

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// The write unit's size: an item up to this many bytes is billed one unit per write.
pub const WRITE_UNIT_BYTES: usize = 1024;

/// The billed size of `item`, in bytes.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, v)| name.len() + value_size(v))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, v)| 1 + name.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// A number's significant digits (leading and trailing zeros, sign and point left out), halved
/// and rounded up, plus one byte.
fn number_size(n: &str) -> usize {
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: Vec<(&str, AttributeValue)>) -> HashMap<String, AttributeValue> {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn strings_and_numbers_are_billed_by_their_bytes_and_significant_digits() {
        let i = item(vec![
            ("name", AttributeValue::S("ünïcode".into())),
            ("n", AttributeValue::N("1700000000000".into())),
            ("z", AttributeValue::N("0.5".into())),
        ]);
        // 4 + 9 (two 2-byte letters), 1 + (2 significant digits -> 1) + 1, 1 + 1 + 1.
        assert_eq!(item_size(&i), 4 + 9 + 1 + 2 + 1 + 2);
    }

    #[test]
    fn lists_and_maps_add_three_bytes_and_one_per_element() {
        let i = item(vec![(
            "m",
            AttributeValue::M(
                [
                    ("a".to_string(), AttributeValue::Bool(true)),
                    (
                        "l".to_string(),
                        AttributeValue::L(vec![AttributeValue::S("xy".into())]),
                    ),
                ]
                .into(),
            ),
        )]);
        // "m" + map(3 + (1 + "a" + 1) + (1 + "l" + list(3 + 1 + 2))).
        assert_eq!(item_size(&i), 1 + 3 + 3 + 8);
    }
}
