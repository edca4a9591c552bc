//! Building Speckle object trees as a connector sends them, for workers that make objects
//! (file import): each object is JSON with a content id (32 hex characters), detached children
//! are `{"referencedId", "speckle_type": "reference"}` entries, and every object with
//! descendants carries `__closure` (descendant id → least depth) and `totalChildrenCount`.
//! Children are added before their parents, so a parent's id covers its children's.

use std::collections::{BTreeMap, HashSet};

use schema::objects::NewObject;
use serde_json::{Map, Value, json};
use sha2::Digest;

/// A stored object as its parents refer to it.
#[derive(Clone, Debug)]
pub struct Child {
    /// Its id.
    pub id: String,
    closure: BTreeMap<String, u32>,
}

/// The objects of one tree, in the order they were added (children first).
#[derive(Default)]
pub struct Tree {
    objects: Vec<NewObject>,
    seen: HashSet<String>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an object made of `fields` (which must include `speckle_type`), with `detached`
    /// children under the named fields; returns how its parents refer to it. An object equal
    /// to one already added is stored once.
    pub fn add(
        &mut self,
        mut fields: Map<String, Value>,
        detached: Vec<(&str, Vec<Child>)>,
    ) -> Child {
        let mut closure: BTreeMap<String, u32> = BTreeMap::new();
        for (field, children) in detached {
            let refs: Vec<Value> = children
                .iter()
                .map(|c| json!({"referencedId": c.id, "speckle_type": "reference"}))
                .collect();
            for child in &children {
                merge(&mut closure, &child.id, 1);
                for (id, depth) in &child.closure {
                    merge(&mut closure, id, depth + 1);
                }
            }
            fields.insert(field.to_owned(), Value::Array(refs));
        }
        let count = closure.len();
        if count > 0 {
            fields.insert("__closure".into(), json!(closure));
            fields.insert("totalChildrenCount".into(), json!(count));
        }
        fields.remove("id");
        // `Map` keeps keys sorted here, so equal objects serialise (and hash) equally.
        let unhashed = Value::Object(fields.clone()).to_string();
        let id = hex::encode(sha2::Sha256::digest(unhashed.as_bytes()))[..32].to_owned();
        if self.seen.insert(id.clone()) {
            // No type: Speckle's base type.
            let speckle_type = fields
                .get("speckle_type")
                .and_then(Value::as_str)
                .unwrap_or("Base")
                .to_owned();
            let closure_json = (count > 0).then(|| json!(closure));
            fields.insert("id".into(), Value::String(id.clone()));
            self.objects.push(NewObject {
                id: id.clone(),
                speckle_type,
                // Saturates; never reached.
                total_children_count: Some(i32::try_from(count).unwrap_or(i32::MAX)),
                closure: closure_json,
                data: Value::Object(fields).to_string(),
            });
        }
        Child { id, closure }
    }

    /// Every object added, children before parents.
    pub fn into_objects(self) -> Vec<NewObject> {
        self.objects
    }
}

fn merge(closure: &mut BTreeMap<String, u32>, id: &str, depth: u32) {
    closure
        .entry(id.to_owned())
        .and_modify(|d| *d = (*d).min(depth))
        .or_insert(depth);
}

/// A triangle or polygon mesh in the units of its file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    /// x, y, z of each vertex.
    pub vertices: Vec<f64>,
    /// Speckle's face encoding: the vertex count of each face, then its vertex indices.
    pub faces: Vec<u64>,
    /// Diffuse colour (ARGB) and opacity, when the file gives one.
    pub material: Option<(String, u32, f64)>,
}

impl Mesh {
    /// The number of faces.
    pub fn face_count(&self) -> usize {
        let mut i = 0;
        let mut n = 0;
        while i < self.faces.len() {
            // u64 fits usize on our targets; else the count ends.
            let step = usize::try_from(self.faces[i]).unwrap_or(usize::MAX);
            i = i.saturating_add(step).saturating_add(1);
            n += 1;
        }
        n
    }

    /// The mesh as a Speckle `Objects.Geometry.Mesh`.
    pub fn fields(&self, units: &str) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("speckle_type".into(), json!("Objects.Geometry.Mesh"));
        fields.insert("units".into(), json!(units));
        fields.insert("vertices".into(), json!(self.vertices));
        fields.insert("faces".into(), json!(self.faces));
        if let Some((name, argb, opacity)) = &self.material {
            fields.insert(
                "renderMaterial".into(),
                json!({
                    "speckle_type": "Objects.Other.RenderMaterial",
                    "name": name,
                    "diffuse": argb,
                    "opacity": opacity,
                    "metalness": 0,
                    "roughness": 1,
                    "emissive": -16_777_216,
                }),
            );
        }
        fields
    }
}

/// A colour as Speckle stores it: ARGB in one signed 32-bit integer's bits.
pub fn argb(r: f64, g: f64, b: f64, a: f64) -> u32 {
    let c = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u32;
    (c(a) << 24) | (c(r) << 16) | (c(g) << 8) | c(b)
}

/// `fields` for a collection named `name`.
pub fn collection(name: &str, collection_type: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "speckle_type".into(),
        json!("Speckle.Core.Models.Collections.Collection"),
    );
    fields.insert("name".into(), json!(name));
    fields.insert("collectionType".into(), json!(collection_type));
    fields
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ids_cover_children_and_closures_count_every_descendant_once() {
        let mut tree = Tree::new();
        let mesh = Mesh {
            vertices: vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            faces: vec![3, 0, 1, 2],
            material: None,
        };
        let m = tree.add(mesh.fields("m"), vec![]);
        let again = tree.add(mesh.fields("m"), vec![]);
        assert_eq!(m.id, again.id, "equal objects have equal ids");
        let mut object = Map::new();
        object.insert("speckle_type".into(), json!("Objects.Data.DataObject"));
        object.insert("name".into(), json!("wall"));
        let o = tree.add(object, vec![("displayValue", vec![m.clone(), again])]);
        let root = tree.add(
            collection("model", "model"),
            vec![("elements", vec![o.clone()])],
        );
        let objects = tree.into_objects();
        assert_eq!(objects.len(), 3, "the repeated mesh is stored once");
        assert!(objects.iter().all(|o| o.id.len() == 32));
        let root_json: Value = serde_json::from_str(&objects[2].data).unwrap();
        assert_eq!(root_json["id"], root.id.as_str());
        assert_eq!(root_json["__closure"][&o.id], 1);
        assert_eq!(root_json["__closure"][&m.id], 2);
        assert_eq!(root_json["totalChildrenCount"], 2);
        let other = {
            let mut t = Tree::new();
            let m2 = t.add(
                Mesh {
                    vertices: vec![9.0; 9],
                    ..mesh.clone()
                }
                .fields("m"),
                vec![],
            );
            m2.id
        };
        assert_ne!(other, m.id, "different content, different id");
    }

    #[test]
    fn faces_are_counted_in_the_speckle_encoding() {
        let mesh = Mesh {
            vertices: vec![],
            faces: vec![3, 0, 1, 2, 4, 0, 1, 2, 3],
            material: None,
        };
        assert_eq!(mesh.face_count(), 2);
        assert_eq!(argb(1.0, 0.0, 0.0, 1.0), 0xFFFF_0000);
    }
}
