//! Keys derived by bgops must equal the keys the seed's Python package derives.

use bgops_core::key::python_json;
use serde_json::Value;

#[test]
fn derive_key_matches_python_vectors() {
    let vectors: Vec<Value> =
        serde_json::from_str(include_str!("../vectors/derive_key.json")).expect("valid vectors");
    assert!(vectors.len() >= 7);
    for v in vectors {
        let tenant = v["tenant_id"].as_str().unwrap();
        let user = v["user_id"].as_str();
        let op = v["operation_type"].as_str().unwrap();
        let params = &v["parameters"];
        assert_eq!(
            python_json(params),
            v["parameters_json"].as_str().unwrap(),
            "json of {v}"
        );
        let key = bgops_core::derive_key(tenant, user, op, Some(params)).unwrap();
        assert_eq!(key, v["key"].as_str().unwrap(), "key of {v}");
    }
}
