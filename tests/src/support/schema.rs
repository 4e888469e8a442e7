//! The alert document's published schema (docs/alert.schema.json), which
//! every incident document the tests see must satisfy.

use std::sync::OnceLock;

use serde_json::Value;

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/alert.schema.json");
        let text = std::fs::read_to_string(path).expect("docs/alert.schema.json");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the schema is valid")
    })
}

/// Panics, naming each violation, unless `doc` satisfies the schema.
pub fn check(doc: &Value) {
    let errors: Vec<String> = validator()
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid alert document: {errors:?}\n{doc}"
    );
}
