//! Reading script replies and stored hashes back into models. Anything that does not
//! parse is [`StorageError::Corrupt`]: a value under our key that we did not write.

use std::collections::HashMap;

use bgops_core::clock::from_millis;
use bgops_storage::StorageError;
use fred::types::Value;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

/// A stored hash, field → value.
pub(crate) struct Fields {
    pub(crate) key: String,
    map: HashMap<String, String>,
}

impl Fields {
    /// From a flat `HGETALL` reply (`[f1, v1, f2, v2, ...]`) or a map reply.
    pub(crate) fn from_value(key: &str, value: Value) -> Result<Self, StorageError> {
        let mut map = HashMap::new();
        match value {
            Value::Array(items) => {
                let mut iter = items.into_iter();
                while let (Some(f), Some(v)) = (iter.next(), iter.next()) {
                    map.insert(text(&f, key)?, text(&v, key)?);
                }
            }
            Value::Map(m) => {
                for (f, v) in m.inner() {
                    let f = f
                        .as_str()
                        .map(std::string::ToString::to_string)
                        .unwrap_or_default();
                    map.insert(f, text(&v, key)?);
                }
            }
            Value::Null => {}
            other => return Err(corrupt(key, format!("expected a hash, got {other:?}"))),
        }
        Ok(Self {
            key: key.to_owned(),
            map,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn opt(&self, field: &str) -> Option<&str> {
        self.map.get(field).map(String::as_str)
    }

    pub(crate) fn req(&self, field: &str) -> Result<&str, StorageError> {
        self.opt(field)
            .ok_or_else(|| corrupt(&self.key, format!("field `{field}` is missing")))
    }

    pub(crate) fn int(&self, field: &str) -> Result<i64, StorageError> {
        let raw = self.req(field)?;
        raw.parse().map_err(|_| {
            corrupt(
                &self.key,
                format!("field `{field}` is not a number: {raw:?}"),
            )
        })
    }

    pub(crate) fn opt_int(&self, field: &str) -> Result<Option<i64>, StorageError> {
        if self.opt(field).is_none() {
            return Ok(None);
        }
        self.int(field).map(Some)
    }

    pub(crate) fn time(&self, field: &str) -> Result<OffsetDateTime, StorageError> {
        self.int(field).map(from_millis)
    }

    pub(crate) fn opt_time(&self, field: &str) -> Result<Option<OffsetDateTime>, StorageError> {
        Ok(self.opt_int(field)?.map(from_millis))
    }

    pub(crate) fn json<T: DeserializeOwned>(&self, field: &str) -> Result<T, StorageError> {
        let raw = self.req(field)?;
        serde_json::from_str(raw)
            .map_err(|e| corrupt(&self.key, format!("field `{field}` is not valid JSON: {e}")))
    }

    pub(crate) fn opt_json<T: DeserializeOwned>(
        &self,
        field: &str,
    ) -> Result<Option<T>, StorageError> {
        if self.opt(field).is_none() {
            return Ok(None);
        }
        self.json(field).map(Some)
    }
}

/// A reply item as text.
pub(crate) fn text(value: &Value, key: &str) -> Result<String, StorageError> {
    match value {
        Value::String(s) => Ok(s.to_string()),
        Value::Bytes(b) => String::from_utf8(b.to_vec())
            .map_err(|_| corrupt(key, "a stored value is not UTF-8".to_owned())),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Double(d) => Ok(d.to_string()),
        other => Err(corrupt(key, format!("expected text, got {other:?}"))),
    }
}

pub(crate) fn corrupt(key: &str, reason: String) -> StorageError {
    StorageError::Corrupt {
        key: key.to_owned(),
        reason,
    }
}

/// Splits a script's array reply into its items.
pub(crate) fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Milliseconds of a duration, as a script argument.
pub(crate) fn ms(d: std::time::Duration) -> String {
    d.as_millis().to_string()
}

/// JSON text of a value.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StorageError> {
    serde_json::to_string(value).map_err(StorageError::Serialization)
}
