//! JSON values written as YAML, for manifests people read: block style,
//! every string double-quoted with JSON's escapes (a JSON string is a
//! valid YAML double-quoted scalar), so no value can be misread as a
//! number, a boolean or a tag — the trap of hand-written YAML.

use serde_json::Value;

/// `value` as one YAML document (without the `---`).
pub fn document(value: &Value) -> String {
    let mut text = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut text, map, 0),
        other => {
            text.push_str(&scalar(other));
            text.push('\n');
        }
    }
    text
}

fn mapping(text: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (index, (key, value)) in map.iter().enumerate() {
        // The first key of a list item sits on the item's "- " line.
        if index > 0 || !text.ends_with("- ") {
            text.push_str(&" ".repeat(indent));
        }
        text.push_str(&key_text(key));
        text.push(':');
        nested(text, value, indent);
    }
}

/// What follows `key:` (or `- `): a scalar on the same line, or a block.
fn nested(text: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            text.push('\n');
            mapping(text, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            text.push('\n');
            for item in items {
                text.push_str(&" ".repeat(indent + 2));
                text.push_str("- ");
                match item {
                    Value::Object(map) if !map.is_empty() => mapping(text, map, indent + 4),
                    Value::Array(list) if !list.is_empty() => {
                        // A list in a list: flow style keeps it readable.
                        text.push_str(&scalar(item));
                        text.push('\n');
                    }
                    other => {
                        text.push_str(&scalar(other));
                        text.push('\n');
                    }
                }
            }
        }
        other => {
            text.push(' ');
            text.push_str(&scalar(other));
            text.push('\n');
        }
    }
}

/// A key plain when it is a simple word (`app.kubernetes.io/name` is),
/// quoted otherwise.
fn key_text(key: &str) -> String {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if plain {
        key.to_owned()
    } else {
        scalar(&Value::String(key.to_owned()))
    }
}

/// A scalar (or an empty or nested collection) in flow style: JSON.
fn scalar(value: &Value) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_block_yaml_with_every_string_quoted() {
        // Keys in sorted order, so that the test holds with serde_json's
        // map ordered by key or by insertion.
        let value = serde_json::json!({
            "kind": "Deployment",
            "metadata": { "labels": { "app.kubernetes.io/name": "web" }, "name": "web" },
            "spec": {
                "containers": [
                    { "args": ["-c", "echo \"yes\"; true"], "name": "web", "ports": [{ "containerPort": 8080 }] },
                    { "env": [], "name": "side" }
                ],
                "replicas": 1,
                "z key": null
            }
        });
        let expected = r#"kind: "Deployment"
metadata:
  labels:
    app.kubernetes.io/name: "web"
  name: "web"
spec:
  containers:
    - args:
        - "-c"
        - "echo \"yes\"; true"
      name: "web"
      ports:
        - containerPort: 8080
    - env: []
      name: "side"
  replicas: 1
  "z key": null
"#;
        assert_eq!(document(&value), expected);
    }
}
