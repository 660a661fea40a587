//! Query parameters and Docker's `filters` argument.
//!
//! `filters` is JSON in either of Docker's two shapes: `{"name":{"web":true}}` (what the Go client
//! sends) or `{"name":["web"]}` (the older list form). Unknown filter names are refused with
//! Docker's `invalid filter 'x'`. Label filters take `key` or `key=value`; a node, service or task
//! matches when it has every key given (and the value, where one is given), as in SwarmKit.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::error::ApiError;

/// The query string of a request.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    /// Parses a raw query string (`a=1&b=x`); later values win.
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A parameter's value.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Docker's boolean: anything but empty, `0`, `no`, `false` and `none` is true.
    pub(crate) fn bool(&self, key: &str) -> bool {
        let v = self.get(key).unwrap_or("").trim().to_ascii_lowercase();
        !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
    }

    /// The `version` parameter of an update (`invalid <kind> version 'x': ...` when malformed).
    pub(crate) fn version(&self, kind: &str) -> Result<u64, ApiError> {
        let raw = self.get("version").unwrap_or("");
        raw.parse::<u64>()
            .map_err(|e| ApiError::bad_request(format!("invalid {kind} version '{raw}': {e}")))
    }

    /// The `filters` parameter.
    pub(crate) fn filters(&self) -> Result<Filters, ApiError> {
        Filters::parse(self.get("filters"))
    }
}

/// Parsed `filters`: each name with its values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses either JSON shape; an absent or empty parameter is no filter.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Filters, ApiError> {
        let raw = raw.unwrap_or("").trim();
        if raw.is_empty() {
            return Ok(Filters::default());
        }
        let bad = |why: String| ApiError::bad_request(format!("invalid filter: {why}"));
        let v: Value = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
        let Value::Object(map) = v else {
            return Err(bad("filters must be a JSON object".into()));
        };
        let mut out = BTreeMap::new();
        for (name, values) in map {
            let list: Vec<String> = match values {
                Value::Object(m) => m.into_iter().map(|(k, _)| k).collect(),
                Value::Array(a) => a
                    .into_iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s),
                        other => Err(bad(format!(
                            "value {other} of filter '{name}' is not a string"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
                Value::String(s) => vec![s],
                other => {
                    return Err(bad(format!(
                        "filter '{name}' has a value of the wrong type: {other}"
                    )))
                }
            };
            out.insert(name, list);
        }
        Ok(Filters(out))
    }

    /// Refuses filter names outside `accepted`.
    pub(crate) fn validate(&self, accepted: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    /// The values of `name` (empty if not given).
    pub(crate) fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `name` was given.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// True when `name` is not given or `value` starts with one of its values.
    pub(crate) fn any_prefix(&self, name: &str, value: &str) -> bool {
        let v = self.get(name);
        v.is_empty() || v.iter().any(|p| value.starts_with(p.as_str()))
    }

    /// True when `name` is not given or `value` equals one of its values.
    pub(crate) fn any_exact(&self, name: &str, value: &str) -> bool {
        let v = self.get(name);
        v.is_empty() || v.iter().any(|p| p == value)
    }

    /// SwarmKit's label match over the `key` / `key=value` values of `name`.
    pub(crate) fn labels_match(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(name).iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|have| v.is_empty() || have == v),
            None => labels.contains_key(f.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse() {
        let a = Filters::parse(Some(r#"{"name":{"web":true},"label":{"a=b":true}}"#)).expect("map");
        let b = Filters::parse(Some(r#"{"name":["web"],"label":["a=b"]}"#)).expect("list");
        assert_eq!(a, b);
        assert_eq!(a.get("name"), ["web".to_string()]);
        assert!(a.validate(&["name", "label"]).is_ok());
        let e = a.validate(&["name"]).expect_err("refused");
        assert_eq!(e.message, "invalid filter 'label'");
        for bad in ["{", "[1]", r#"{"name":5}"#, r#"{"name":[1]}"#] {
            assert!(Filters::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_matching() {
        let f = Filters::parse(Some(r#"{"label":["a","b=2"]}"#)).expect("parse");
        let mut l = BTreeMap::new();
        l.insert("a".to_string(), "x".to_string());
        assert!(!f.labels_match("label", &l));
        l.insert("b".to_string(), "2".to_string());
        assert!(f.labels_match("label", &l));
        l.insert("b".to_string(), "3".to_string());
        assert!(!f.labels_match("label", &l));
    }

    #[test]
    fn docker_booleans() {
        let q = Query::parse(Some("a=1&b=false&c=True&d=&e=none"));
        assert!(q.bool("a") && q.bool("c"));
        assert!(!q.bool("b") && !q.bool("d") && !q.bool("e") && !q.bool("zz"));
        assert!(q.version("service").is_err());
        assert_eq!(Query::parse(Some("version=12")).version("x").ok(), Some(12));
    }
}
