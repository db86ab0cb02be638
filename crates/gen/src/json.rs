//! An ordered JSON tree, so generated documents read in a sensible key order (`$schema`, `$id`,
//! `title` first; `asyncapi`, `info`, `channels`, … in the order of the specification) whatever
//! features `serde_json` was built with. Objects from the model (payload schemas) are put in a
//! fixed order too: JSON Schema keywords by [`KEYWORD_ORDER`], everything else alphabetically.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Number, Value};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum J {
    Null,
    Bool(bool),
    Num(Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// An object from key/value pairs, in the given order.
pub(crate) fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, J)>) -> J {
    J::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// An array of strings.
pub(crate) fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> J {
    J::Arr(items.into_iter().map(|s| J::Str(s.as_ref().to_string())).collect())
}

impl J {
    /// Appends a key to an object (no-op on anything else).
    pub(crate) fn push(&mut self, key: impl Into<String>, value: J) {
        if let J::Obj(pairs) = self {
            pairs.push((key.into(), value));
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Pretty JSON (two-space indent) with a final newline.
    pub(crate) fn pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("an ordered JSON tree always serializes");
        s.push('\n');
        s
    }
}

impl From<&str> for J {
    fn from(s: &str) -> J {
        J::Str(s.to_string())
    }
}

impl From<String> for J {
    fn from(s: String) -> J {
        J::Str(s)
    }
}

impl From<&String> for J {
    fn from(s: &String) -> J {
        J::Str(s.clone())
    }
}

impl From<bool> for J {
    fn from(b: bool) -> J {
        J::Bool(b)
    }
}

impl From<u32> for J {
    fn from(n: u32) -> J {
        J::Num(n.into())
    }
}

impl From<u64> for J {
    fn from(n: u64) -> J {
        J::Num(n.into())
    }
}

/// A whole number is written without a fraction (`30`, not `30.0`); JSON has no NaN or infinity,
/// so those become null.
impl From<f64> for J {
    fn from(n: f64) -> J {
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every whole f64 below is an exact i64
        if n.fract() == 0.0 && n.abs() < EXACT {
            return J::Num((n as i64).into());
        }
        Number::from_f64(n).map(J::Num).unwrap_or(J::Null)
    }
}

impl From<Vec<J>> for J {
    fn from(items: Vec<J>) -> J {
        J::Arr(items)
    }
}

/// Any JSON value, object keys sorted alphabetically.
impl From<&Value> for J {
    fn from(v: &Value) -> J {
        match v {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => J::Num(n.clone()),
            Value::String(s) => J::Str(s.clone()),
            Value::Array(items) => J::Arr(items.iter().map(J::from).collect()),
            Value::Object(map) => {
                let mut pairs: Vec<(String, J)> = map.iter().map(|(k, v)| (k.clone(), J::from(v))).collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                J::Obj(pairs)
            }
        }
    }
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => serializer.serialize_unit(),
            J::Bool(b) => serializer.serialize_bool(*b),
            J::Num(n) => n.serialize(serializer),
            J::Str(s) => serializer.serialize_str(s),
            J::Arr(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            J::Obj(pairs) => {
                let mut map = serializer.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// The order JSON Schema keywords are written in; unknown keys follow, alphabetically.
const KEYWORD_ORDER: &[&str] = &[
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$ref",
    "$dynamicRef",
    "title",
    "description",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "type",
    "const",
    "enum",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "required",
    "dependentRequired",
    "properties",
    "patternProperties",
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "prefixItems",
    "items",
    "contains",
    "minContains",
    "maxContains",
    "minItems",
    "maxItems",
    "uniqueItems",
    "unevaluatedItems",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "default",
    "examples",
    "$defs",
    "definitions",
    "$vocabulary",
];

/// Keywords whose value is an object of subschemas.
const SCHEMA_MAPS: &[&str] = &["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];
/// Keywords whose value is one subschema (or, for `items` in older drafts, an array of them).
const SCHEMA_ONE: &[&str] = &[
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
    "items",
    "contains",
    "unevaluatedItems",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
/// Keywords whose value is an array of subschemas.
const SCHEMA_LISTS: &[&str] = &["prefixItems", "allOf", "anyOf", "oneOf"];

fn keyword_rank(key: &str) -> usize {
    KEYWORD_ORDER.iter().position(|k| *k == key).unwrap_or(KEYWORD_ORDER.len())
}

/// A JSON Schema from the model as an ordered tree; `rewrite_ref` maps every `$ref`/`$dynamicRef`.
pub(crate) fn schema(value: &Value, rewrite_ref: &dyn Fn(&str) -> String) -> J {
    let Value::Object(map) = value else { return J::from(value) };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by(|a, b| keyword_rank(a).cmp(&keyword_rank(b)).then_with(|| a.cmp(b)));
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let v = &map[key];
        let converted = match (key.as_str(), v) {
            ("$ref" | "$dynamicRef", Value::String(r)) => J::Str(rewrite_ref(r)),
            (k, Value::Object(children)) if SCHEMA_MAPS.contains(&k) => {
                let mut names: Vec<&String> = children.keys().collect();
                names.sort();
                J::Obj(names.into_iter().map(|n| (n.clone(), schema(&children[n], rewrite_ref))).collect())
            }
            (k, Value::Array(items)) if SCHEMA_LISTS.contains(&k) || k == "items" => J::Arr(items.iter().map(|s| schema(s, rewrite_ref)).collect()),
            (k, _) if SCHEMA_ONE.contains(&k) => schema(v, rewrite_ref),
            _ => J::from(v),
        };
        out.push((key.clone(), converted));
    }
    J::Obj(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_keywords_come_in_a_fixed_order_and_refs_are_rewritten() {
        let s = json!({"required": ["b"], "type": "object", "x-extra": 1, "title": "T",
                       "properties": {"b": {"$ref": "#/$defs/B"}, "a": {"type": "string"}},
                       "$defs": {"B": {"type": "integer"}}});
        let j = schema(&s, &|r| format!("#/components/schemas/X{}", r.trim_start_matches('#')));
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            r##"{"title":"T","type":"object","required":["b"],"properties":{"a":{"type":"string"},"b":{"$ref":"#/components/schemas/X/$defs/B"}},"$defs":{"B":{"type":"integer"}},"x-extra":1}"##
        );
    }

    #[test]
    fn objects_keep_insertion_order() {
        let j = obj([("z", J::from(1u32)), ("a", J::from("x"))]);
        assert_eq!(j.pretty(), "{\n  \"z\": 1,\n  \"a\": \"x\"\n}\n");
    }
}
