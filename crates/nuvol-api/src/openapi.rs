//! Assembling the OpenAPI document from the API's own part and every
//! component's fragment.

use serde_json::{Map, Value};

/// Why the fragments do not fit together.
#[derive(Debug, thiserror::Error)]
#[error("OpenAPI fragment of {component}: {message}")]
pub struct MergeError {
    pub component: String,
    pub message: String,
}

/// `base` with every fragment's `paths` (method by method) and
/// `components` (schemas, responses, ...) merged in. Two components
/// documenting the same operation, or the same component name differently,
/// is an error.
pub fn assemble(base: &str, fragments: &[(&str, &str)]) -> Result<Value, MergeError> {
    let mut doc: Value = serde_json::from_str(base).map_err(|e| MergeError {
        component: "api".into(),
        message: format!("not JSON: {e}"),
    })?;
    for (component, text) in fragments {
        let err = |message: String| MergeError {
            component: (*component).to_owned(),
            message,
        };
        let frag: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
        let Value::Object(frag) = frag else {
            return Err(err("not a JSON object".into()));
        };
        for (key, v) in &frag {
            match key.as_str() {
                "paths" => {
                    let paths = object(&mut doc, "paths")
                        .ok_or_else(|| err("the base document is not an object".into()))?;
                    let Value::Object(items) = v else {
                        return Err(err("`paths` is not an object".into()));
                    };
                    for (path, item) in items {
                        let Value::Object(ops) = item else {
                            return Err(err(format!("path {path} is not an object")));
                        };
                        let target = paths
                            .entry(path.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                        let Value::Object(target) = target else {
                            return Err(err(format!("path {path} is not an object")));
                        };
                        for (op, body) in ops {
                            if let Some(existing) = target.get(op) {
                                if existing != body {
                                    return Err(err(format!("{op} {path} is documented twice")));
                                }
                            }
                            target.insert(op.clone(), body.clone());
                        }
                    }
                }
                "components" => {
                    let Value::Object(kinds) = v else {
                        return Err(err("`components` is not an object".into()));
                    };
                    for (kind, entries) in kinds {
                        let Value::Object(entries) = entries else {
                            return Err(err(format!("components.{kind} is not an object")));
                        };
                        let comps = object(&mut doc, "components")
                            .ok_or_else(|| err("the base document is not an object".into()))?;
                        let target = comps
                            .entry(kind.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                        let Value::Object(target) = target else {
                            return Err(err(format!("components.{kind} is not an object")));
                        };
                        for (name, body) in entries {
                            if let Some(existing) = target.get(name) {
                                if existing != body {
                                    return Err(err(format!(
                                        "components.{kind}.{name} differs from another component's"
                                    )));
                                }
                            }
                            target.insert(name.clone(), body.clone());
                        }
                    }
                }
                other => {
                    return Err(err(format!(
                        "unexpected key {other:?} (only paths and components)"
                    )))
                }
            }
        }
    }
    Ok(doc)
}

/// `doc[key]` as an object, made one if absent.
fn object<'a>(doc: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let v = doc
        .as_object_mut()?
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    v.as_object_mut()
}

/// Every `(METHOD, path)` a document describes.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in item.as_object().map(|o| o.keys()).into_iter().flatten() {
                if ["get", "put", "post", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    ops.push((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    ops.sort();
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_and_refuses_clashes() {
        let base = json!({"openapi": "3.0.3", "paths": {"/a": {"get": {"x": 1}}}, "components": {"schemas": {"E": {}}}}).to_string();
        let frag = json!({"paths": {"/a": {"post": {"y": 1}}, "/b": {"get": {}}}, "components": {"schemas": {"S": {"type": "string"}}}}).to_string();
        let doc = assemble(&base, &[("c", &frag)]).unwrap();
        assert_eq!(
            operations(&doc),
            [
                ("GET".into(), "/a".into()),
                ("GET".into(), "/b".into()),
                ("POST".into(), "/a".into())
            ]
        );
        assert!(doc["components"]["schemas"]["S"].is_object());
        let clash = json!({"paths": {"/a": {"get": {"z": 2}}}}).to_string();
        let e = assemble(&base, &[("c", &clash)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "OpenAPI fragment of c: get /a is documented twice"
        );
        let clash = json!({"components": {"schemas": {"E": {"type": "x"}}}}).to_string();
        let e = assemble(&base, &[("c", &clash)]).unwrap_err();
        assert!(e.to_string().contains("components.schemas.E"), "{e}");
    }
}
