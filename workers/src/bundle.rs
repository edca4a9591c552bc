//! Turns a bundle (the parquet files specklepy 2026.9's `operations.send3` uploads) into
//! ordinary Speckle objects, so that the viewer, GraphQL `object` and an old client's
//! `operations.receive` can read a bundle-born version like any other.
//!
//! Pure: bytes in, objects out; no IO. The mapping follows specklepy's own projection of a
//! received bundle onto the legacy object tree (`specklepy/bundle/base_projection.py`), with
//! two differences noted below.
//!
//! # What is read
//!
//! Files are matched by the end of their bare name, as specklepy's reader does, the first in
//! sorted order winning (`{base}.eav.objects.parquet`, ...); geometry may be sharded, so every
//! `*.geometries*.parquet` is read.
//!
//! | file | columns | used for |
//! |---|---|---|
//! | `*.eav.objects.parquet` | `object_index`, `application_id` | the objects (dense index → application id) |
//! | `*.eav.paths.parquet` | `path_index`, `path` | the property paths (`name`, `units`, `properties.A.B`, ...) |
//! | `*.eav.eav.parquet` | `object_index`, `path_index`, `value_string`, `value_double`, `value_boolean` | property values, one row per leaf |
//! | `*.eav.object_type.parquet` (optional) | `object_index`, `type_index` | an object's type |
//! | `*.eav.type_eav.parquet` (optional) | `type_index`, `path_index`, `value_*` | type properties, shared by the type's objects |
//! | `*.envelope.nodes.parquet` | `id`, `kind`, `name`, `def_ref`, `transform` | collections (kind 7, parent in `def_ref`), definitions (1) and instances (2, definition in `def_ref`, 16 row-major doubles as CSV in `transform`) |
//! | `*.envelope.relations.parquet` | `rel`, `src`, `dst`, `ord` | edges: DISPLAY (1) object → geometry, DEFINES (4) definition → geometry, DISPLAY_INSTANCE (8) object → instance, DEFINES_INSTANCE (9) definition → nested instance, IN_COLLECTION (10) object → collection |
//! | `*.geometries*.parquet` | `geometryIndex`, `content` | SGEO v1 blobs (decoded by the `sgeo` module below) |
//!
//! # What is made
//!
//! - The root: a `Speckle.Core.Models.Collections.Collection` named after the model, holding
//!   (as detached references in `elements`) the top-level collections and the objects that
//!   are in none; `units` is the bundle's (the first object's `units` property).
//! - One collection per container node, nested as the nodes' `def_ref` chain says, named after
//!   the node, `applicationId` `coll-<node>`; child collections come before objects.
//! - One `Objects.Data.DataObject` per bundle object: `applicationId` = the bundle object's
//!   application id, `name` (its `name` property, else the application id), `properties` (the
//!   `properties.*` rows nested at the dots, type properties overlaid by the object's own, each
//!   value the row's boolean, else its number, else its string, as specklepy reads them) and
//!   `displayValue`: detached geometry.
//! - Geometry: meshes as `Objects.Geometry.Mesh` with inline `vertices`, `faces` (Speckle's
//!   face encoding, as SGEO stores it), `colors`, `textureCoordinates`, `vertexNormals` and
//!   `units`; lines, polylines (and the render polylines of curves and spirals) and points too.
//!   Arcs, circles, ellipses, boxes, polycurves, regions, text and non-SGEO blobs (raw solids)
//!   are left out.
//!
//! Differences from specklepy's projection: an object with no renderable geometry is still
//! made (with an empty `displayValue`) rather than dropped, and instanced geometry (objects
//! placed through definitions) is baked, each placement's transform applied to the
//! definition's geometry, rather than sent as instance proxies, which this tree does not need.
//!
//! Every object carries an `id` of 32 lowercase hex characters, the first half of the SHA-256
//! of its JSON without the id; `__closure` (descendant id → depth, 1 for a direct child) and
//! `totalChildrenCount` (the closure's size) are on every object. Objects are listed children
//! first, root last, each once.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schema::objects::NewObject;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// One file of a bundle: its bare name and bytes.
#[derive(Clone, Debug)]
pub struct BundleFile {
    /// The bare file name, e.g. `abc123def4.eav.objects.parquet`.
    pub name: String,
    /// The file's content.
    pub bytes: Vec<u8>,
}

/// The objects made from a bundle: the root collection's id and every object (root
/// included), each ready for `schema::objects::insert_batch`.
#[derive(Clone, Debug)]
pub struct ConvertedBundle {
    /// The root collection's id.
    pub root_id: String,
    /// Every object, children before parents, the root last, each id once.
    pub objects: Vec<NewObject>,
}

/// Why a bundle could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A required table is not among the files.
    #[error("the bundle has no `*{0}` file")]
    MissingTable(&'static str),
    /// A file is not readable parquet.
    #[error("{file} is not readable parquet: {source}")]
    Parquet {
        /// The file.
        file: String,
        /// What the parquet reader said.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A file's rows could not be decoded.
    #[error("{file}: decoding its rows: {source}")]
    Arrow {
        /// The file.
        file: String,
        /// What the arrow decoder said.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A column is missing, of the wrong type, or null where a value is required.
    #[error("{file}: column `{column}` {problem}")]
    BadColumn {
        /// The file.
        file: String,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A geometry blob that claims to be SGEO does not decode.
    #[error("{file}: geometry {index} is malformed: {problem}")]
    MalformedGeometry {
        /// The geometry shard.
        file: String,
        /// The geometry's `geometryIndex`.
        index: i64,
        /// What is wrong with it.
        problem: String,
    },
    /// An object could not be written as JSON.
    #[error("writing an object's JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Converts a bundle's parquet files into Speckle objects under a root collection named
/// `model_name`; see the module documentation for the mapping.
pub fn objects_from_bundle(
    files: &[BundleFile],
    model_name: &str,
) -> Result<ConvertedBundle, BundleError> {
    let mut sorted: Vec<&BundleFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));

    let objects = Table::read(required(&sorted, OBJECTS)?)?;
    let paths = Table::read(required(&sorted, PATHS)?)?;
    let eav = Table::read(required(&sorted, EAV)?)?;
    let nodes = Table::read(required(&sorted, NODES)?)?;
    let relations = Table::read(required(&sorted, RELATIONS)?)?;
    let type_eav = optional(&sorted, TYPE_EAV).map(Table::read).transpose()?;
    let object_type = optional(&sorted, OBJECT_TYPE)
        .map(Table::read)
        .transpose()?;
    let shards = sorted
        .iter()
        .copied()
        .filter(|f| is_geometry_shard(&f.name))
        .map(Table::read)
        .collect::<Result<Vec<_>, _>>()?;
    if shards.is_empty() {
        return Err(BundleError::MissingTable(GEOMETRIES));
    }

    let bundle = Bundle {
        objects: read_objects(&objects)?,
        properties: Properties::read(&eav, "object_index", &paths)?,
        type_properties: match &type_eav {
            Some(t) if t.has("type_index") => Properties::read(t, "type_index", &paths)?,
            _ => Properties::default(),
        },
        type_by_object: match &object_type {
            Some(t) if t.has("object_index") => read_pairs(t, "object_index", "type_index")?,
            _ => HashMap::new(),
        },
        nodes: read_nodes(&nodes)?,
        relations: Relations::read(&relations)?,
        geometries: read_geometries(&shards)?,
    };
    bundle.convert(model_name)
}

// ── tables ──────────────────────────────────────────────────────────────────────────────

const OBJECTS: &str = ".eav.objects.parquet";
const PATHS: &str = ".eav.paths.parquet";
const EAV: &str = ".eav.eav.parquet";
const TYPE_EAV: &str = ".eav.type_eav.parquet";
const OBJECT_TYPE: &str = ".eav.object_type.parquet";
const NODES: &str = ".envelope.nodes.parquet";
const RELATIONS: &str = ".envelope.relations.parquet";
const GEOMETRIES: &str = ".geometries*.parquet";

fn optional<'a>(sorted: &[&'a BundleFile], suffix: &str) -> Option<&'a BundleFile> {
    sorted.iter().copied().find(|f| f.name.ends_with(suffix))
}

fn required<'a>(
    sorted: &[&'a BundleFile],
    suffix: &'static str,
) -> Result<&'a BundleFile, BundleError> {
    optional(sorted, suffix).ok_or(BundleError::MissingTable(suffix))
}

/// `*.geometries*.parquet`, as specklepy globs the shards.
fn is_geometry_shard(name: &str) -> bool {
    name.strip_suffix(".parquet")
        .is_some_and(|stem| stem.contains(".geometries"))
}

/// One parquet file, all of its rows decoded.
struct Table<'f> {
    file: &'f str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl<'f> Table<'f> {
    fn read(file: &'f BundleFile) -> Result<Self, BundleError> {
        let parquet_error = |source| BundleError::Parquet {
            file: file.name.clone(),
            source,
        };
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(&file.bytes))
                .map_err(parquet_error)?;
        let schema = builder.schema().clone();
        let batches = builder
            .build()
            .map_err(parquet_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| BundleError::Arrow {
                file: file.name.clone(),
                source,
            })?;
        Ok(Self {
            file: &file.name,
            schema,
            batches,
        })
    }

    fn has(&self, column: &str) -> bool {
        self.schema.field_with_name(column).is_ok()
    }

    fn bad(&self, column: &'static str, problem: impl Into<String>) -> BundleError {
        BundleError::BadColumn {
            file: self.file.to_owned(),
            column,
            problem: problem.into(),
        }
    }

    fn wrong_type(&self, column: &'static str, array: &ArrayRef, expected: &str) -> BundleError {
        self.bad(
            column,
            format!("has type {}, expected {expected}", array.data_type()),
        )
    }

    /// The column's arrays, one per batch.
    fn column(&self, column: &'static str) -> Result<Vec<&ArrayRef>, BundleError> {
        if !self.has(column) {
            return Err(self.bad(column, "is missing"));
        }
        self.batches
            .iter()
            .map(|b| {
                b.column_by_name(column)
                    .ok_or_else(|| self.bad(column, "is missing from a batch"))
            })
            .collect()
    }

    /// Every value of `column`, each batch's array read by `read` (`None`: not of a type it
    /// reads, `expected`).
    fn values<'a, T>(
        &'a self,
        column: &'static str,
        expected: &str,
        read: impl Fn(&'a ArrayRef) -> Option<Vec<Option<T>>>,
    ) -> Result<Vec<Option<T>>, BundleError> {
        let mut out = Vec::new();
        for array in self.column(column)? {
            let Some(values) = read(array) else {
                return Err(self.wrong_type(column, array, expected));
            };
            out.extend(values);
        }
        Ok(out)
    }

    fn ints(&self, column: &'static str) -> Result<Vec<Option<i64>>, BundleError> {
        self.values(column, "an integer", |array| {
            array
                .as_primitive_opt::<Int32Type>()
                .map(|a| a.iter().map(|v| v.map(i64::from)).collect())
                .or_else(|| {
                    array
                        .as_primitive_opt::<Int64Type>()
                        .map(|a| a.iter().collect())
                })
        })
    }

    /// An integer column that must have no nulls.
    fn required_ints(&self, column: &'static str) -> Result<Vec<i64>, BundleError> {
        self.ints(column)?
            .into_iter()
            .enumerate()
            .map(|(row, v)| v.ok_or_else(|| self.bad(column, format!("is null in row {row}"))))
            .collect()
    }

    fn floats(&self, column: &'static str) -> Result<Vec<Option<f64>>, BundleError> {
        self.values(column, "a float", |array| {
            array
                .as_primitive_opt::<Float64Type>()
                .map(|a| a.iter().collect())
                .or_else(|| {
                    array
                        .as_primitive_opt::<Float32Type>()
                        .map(|a| a.iter().map(|v| v.map(f64::from)).collect())
                })
        })
    }

    fn bools(&self, column: &'static str) -> Result<Vec<Option<bool>>, BundleError> {
        self.values(column, "a boolean", |array| {
            array.as_boolean_opt().map(|a| a.iter().collect())
        })
    }

    fn strings(&self, column: &'static str) -> Result<Vec<Option<&str>>, BundleError> {
        self.values(column, "a string", |array| {
            array
                .as_string_opt::<i32>()
                .map(|a| a.iter().collect())
                .or_else(|| array.as_string_opt::<i64>().map(|a| a.iter().collect()))
                .or_else(|| array.as_string_view_opt().map(|a| a.iter().collect()))
        })
    }

    fn blobs(&self, column: &'static str) -> Result<Vec<Option<&[u8]>>, BundleError> {
        self.values(column, "binary", |array| {
            array
                .as_binary_opt::<i32>()
                .map(|a| a.iter().collect())
                .or_else(|| array.as_binary_opt::<i64>().map(|a| a.iter().collect()))
                .or_else(|| array.as_binary_view_opt().map(|a| a.iter().collect()))
        })
    }
}

// ── the parsed bundle ───────────────────────────────────────────────────────────────────

/// object index → application id; a null id reads as the index, as in specklepy.
fn read_objects(t: &Table<'_>) -> Result<BTreeMap<i64, String>, BundleError> {
    let ks = t.required_ints("object_index")?;
    let ids = t.strings("application_id")?;
    Ok(ks
        .into_iter()
        .zip(ids)
        .map(|(k, id)| (k, id.map_or_else(|| k.to_string(), str::to_owned)))
        .collect())
}

fn read_pairs(
    t: &Table<'_>,
    key: &'static str,
    value: &'static str,
) -> Result<HashMap<i64, i64>, BundleError> {
    Ok(t.required_ints(key)?
        .into_iter()
        .zip(t.required_ints(value)?)
        .collect())
}

const KIND_CONTAINER: i64 = 7;

/// One envelope node: what is needed of collections (kind 7), definitions (1) and
/// instances (2).
struct Node {
    kind: i64,
    name: Option<String>,
    def_ref: Option<i64>,
    transform: Option<[f64; 16]>,
}

fn read_nodes(t: &Table<'_>) -> Result<BTreeMap<i64, Node>, BundleError> {
    let ids = t.required_ints("id")?;
    let kinds = t.required_ints("kind")?;
    let names = t.strings("name")?;
    let def_refs = t.ints("def_ref")?;
    let transforms = t.strings("transform")?;
    let mut nodes = BTreeMap::new();
    for (i, id) in ids.into_iter().enumerate() {
        nodes.insert(
            id,
            Node {
                kind: kinds.get(i).copied().unwrap_or_default(),
                name: names.get(i).copied().flatten().map(str::to_owned),
                def_ref: def_refs.get(i).copied().flatten(),
                transform: transforms
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(parse_transform),
            },
        );
    }
    Ok(nodes)
}

/// 16 comma-separated doubles, row-major; anything else reads as no transform.
fn parse_transform(csv: &str) -> Option<[f64; 16]> {
    let mut out = [0.0; 16];
    let mut parts = csv.split(',');
    for slot in &mut out {
        *slot = parts.next()?.trim().parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

const REL_DISPLAY: i64 = 1;
const REL_DEFINES: i64 = 4;
const REL_DISPLAY_INSTANCE: i64 = 8;
const REL_DEFINES_INSTANCE: i64 = 9;
const REL_IN_COLLECTION: i64 = 10;

/// The edges the conversion follows, each list in the table's row order.
#[derive(Default)]
struct Relations {
    /// object → [(ord, geometry)]
    display: HashMap<i64, Vec<(i64, i64)>>,
    /// object → [(ord, instance node)]
    display_instance: HashMap<i64, Vec<(i64, i64)>>,
    /// definition node → [geometry]
    defines: HashMap<i64, Vec<i64>>,
    /// definition node → [instance node]
    defines_instance: HashMap<i64, Vec<i64>>,
    /// object → container node (the last edge wins, as in specklepy)
    collection: HashMap<i64, i64>,
}

impl Relations {
    fn read(t: &Table<'_>) -> Result<Self, BundleError> {
        let rels = t.required_ints("rel")?;
        let srcs = t.required_ints("src")?;
        let dsts = t.required_ints("dst")?;
        let ords = t.ints("ord")?;
        let mut r = Self::default();
        for (i, ((rel, src), dst)) in rels.into_iter().zip(srcs).zip(dsts).enumerate() {
            // No `ord`: sorts first.
            let ord = ords.get(i).copied().flatten().unwrap_or(0);
            match rel {
                REL_DISPLAY => r.display.entry(src).or_default().push((ord, dst)),
                REL_DISPLAY_INSTANCE => r.display_instance.entry(src).or_default().push((ord, dst)),
                REL_DEFINES => r.defines.entry(src).or_default().push(dst),
                REL_DEFINES_INSTANCE => r.defines_instance.entry(src).or_default().push(dst),
                REL_IN_COLLECTION => {
                    r.collection.insert(src, dst);
                }
                _ => {}
            }
        }
        // specklepy orders an object's geometry by ord; the sort is stable, so ties keep
        // their row order.
        for edges in r
            .display
            .values_mut()
            .chain(r.display_instance.values_mut())
        {
            edges.sort_by_key(|&(ord, _)| ord);
        }
        Ok(r)
    }
}

/// One geometry blob and the shard it came from.
struct Blob<'t> {
    file: &'t str,
    content: &'t [u8],
}

/// geometryIndex → blob over every shard; a later shard wins a repeated index, as in
/// specklepy.
fn read_geometries<'t>(shards: &'t [Table<'_>]) -> Result<HashMap<i64, Blob<'t>>, BundleError> {
    let mut out = HashMap::new();
    for shard in shards {
        let ks = shard.required_ints("geometryIndex")?;
        let contents = shard.blobs("content")?;
        for (k, content) in ks.into_iter().zip(contents) {
            if let Some(content) = content {
                out.insert(
                    k,
                    Blob {
                        file: shard.file,
                        content,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// One property row: its path, its raw string, and its value as specklepy reads it.
struct PropertyRow<'t> {
    path: &'t str,
    text: Option<&'t str>,
    value: Value,
}

/// A key's (object's or type's) property rows, keys ascending, rows in table order.
#[derive(Default)]
struct Properties<'t> {
    rows: BTreeMap<i64, Vec<PropertyRow<'t>>>,
}

impl<'t> Properties<'t> {
    fn read(
        eav: &'t Table<'_>,
        key_column: &'static str,
        paths: &'t Table<'_>,
    ) -> Result<Self, BundleError> {
        let path_by_index: HashMap<i64, &str> = paths
            .required_ints("path_index")?
            .into_iter()
            .zip(paths.strings("path")?)
            .filter_map(|(i, p)| Some((i, p?)))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let keys = eav.required_ints(key_column)?;
        let path_ids = eav.required_ints("path_index")?;
        let strings = eav.strings("value_string")?;
        let doubles = eav.floats("value_double")?;
        let booleans = eav.bools("value_boolean")?;
        let mut rows: BTreeMap<i64, Vec<PropertyRow<'t>>> = BTreeMap::new();
        for (i, (key, path_id)) in keys.into_iter().zip(path_ids).enumerate() {
            let Some(&path) = path_by_index.get(&path_id) else {
                continue;
            };
            let text = strings.get(i).copied().flatten();
            // Boolean first, then number, then string: specklepy's `coalesce`.
            let value = if let Some(b) = booleans.get(i).copied().flatten() {
                Value::Bool(b)
            } else if let Some(d) = doubles.get(i).copied().flatten() {
                Value::from(d)
            } else if let Some(s) = text {
                Value::from(s)
            } else {
                continue;
            };
            rows.entry(key)
                .or_default()
                .push(PropertyRow { path, text, value });
        }
        Ok(Self { rows })
    }

    fn of(&self, key: i64) -> &[PropertyRow<'t>] {
        self.rows.get(&key).map(Vec::as_slice).unwrap_or_default()
    }

    /// The raw string of the key's first row at `path`.
    fn string(&self, key: i64, path: &str) -> Option<&'t str> {
        self.of(key)
            .iter()
            .find(|r| r.path == path)
            .and_then(|r| r.text)
    }

    /// The key's `properties.*` rows as a nested object, split at the dots; a later row
    /// replaces an earlier one at the same place.
    fn nested(&self, key: i64) -> Map<String, Value> {
        let mut root = Map::new();
        for row in self.of(key) {
            if let Some(rest) = row.path.strip_prefix("properties.") {
                insert_at(&mut root, rest, row.value.clone());
            }
        }
        root
    }

    /// The first non-empty `units` string, keys ascending: the bundle's units.
    fn first_units(&self) -> Option<&'t str> {
        self.rows.values().flatten().find_map(|r| match &r.value {
            Value::String(s) if r.path == "units" && !s.is_empty() => r.text,
            _ => None,
        })
    }
}

fn insert_at(root: &mut Map<String, Value>, dotted: &str, value: Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let Some(last) = parts.pop() else {
        return;
    };
    let mut cursor = root;
    for part in parts {
        let entry = cursor
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        cursor = next;
    }
    cursor.insert(last.to_owned(), value);
}

/// Lays `source` over `target`, merging objects key by key.
fn overlay(target: &mut Map<String, Value>, source: Map<String, Value>) {
    for (key, value) in source {
        match value {
            Value::Object(inner) => {
                if let Some(Value::Object(existing)) = target.get_mut(&key) {
                    overlay(existing, inner);
                } else {
                    target.insert(key, Value::Object(inner));
                }
            }
            other => {
                target.insert(key, other);
            }
        }
    }
}

struct Bundle<'t> {
    objects: BTreeMap<i64, String>,
    properties: Properties<'t>,
    type_properties: Properties<'t>,
    type_by_object: HashMap<i64, i64>,
    nodes: BTreeMap<i64, Node>,
    relations: Relations,
    geometries: HashMap<i64, Blob<'t>>,
}

/// How deep nested placements are followed, as in specklepy.
const NESTING_GUARD: usize = 32;

impl Bundle<'_> {
    fn convert(&self, model_name: &str) -> Result<ConvertedBundle, BundleError> {
        let mut store = Store::default();
        let units = self.properties.first_units();

        // Which container each object sits in; objects in no (reachable) container go to
        // the root, as do containers whose parent is not a container.
        let containers: BTreeMap<i64, &Node> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.kind == KIND_CONTAINER)
            .map(|(&k, n)| (k, n))
            .collect();
        let mut child_containers: HashMap<Option<i64>, Vec<i64>> = HashMap::new();
        for (&k, node) in &containers {
            let parent = node.def_ref.filter(|p| containers.contains_key(p));
            child_containers.entry(parent).or_default().push(k);
        }
        let reachable = reachable_from_root(&child_containers);

        let mut objects_in: HashMap<Option<i64>, Vec<Built>> = HashMap::new();
        for (&k, application_id) in &self.objects {
            let built = self.data_object(&mut store, k, application_id, units)?;
            let home = self
                .relations
                .collection
                .get(&k)
                .copied()
                .filter(|c| reachable.contains(c));
            objects_in.entry(home).or_default().push(built);
        }

        let tree = Tree {
            containers: &containers,
            child_containers: &child_containers,
            objects_in: &objects_in,
        };
        let mut elements = Vec::new();
        for &child in tree.child_containers_of(None) {
            elements.push(tree.collection(&mut store, child)?);
        }
        elements.extend(tree.objects_of(None).iter().cloned());

        let mut root = Map::new();
        root.insert("speckle_type".into(), COLLECTION.into());
        root.insert("name".into(), model_name.into());
        if let Some(units) = units {
            root.insert("units".into(), units.into());
        }
        root.insert("elements".into(), references(&elements));
        let root = store.add(root, &elements)?;
        Ok(ConvertedBundle {
            root_id: root.id,
            objects: store.objects,
        })
    }

    /// One bundle object as a DataObject, its geometry stored first.
    fn data_object(
        &self,
        store: &mut Store,
        k: i64,
        application_id: &str,
        bundle_units: Option<&str>,
    ) -> Result<Built, BundleError> {
        let own_units = self.properties.string(k, "units").filter(|u| !u.is_empty());
        let fallback_units = own_units.or(bundle_units);
        let mut shapes = Vec::new();
        for &(_, geometry) in self.relations.display.get(&k).into_iter().flatten() {
            self.push_geometry(&mut shapes, geometry, None)?;
        }
        for &(_, instance) in self
            .relations
            .display_instance
            .get(&k)
            .into_iter()
            .flatten()
        {
            self.push_placement(&mut shapes, instance, None, &mut Vec::new())?;
        }
        let mut display = Vec::with_capacity(shapes.len());
        for shape in shapes {
            let body = shape.to_json(application_id, fallback_units);
            display.push(store.add(body, &[])?);
        }

        let mut properties = match self.type_by_object.get(&k) {
            Some(&t) => self.type_properties.nested(t),
            None => Map::new(),
        };
        overlay(&mut properties, self.properties.nested(k));
        // Unnamed: its application id.
        let name = self
            .properties
            .string(k, "name")
            .filter(|n| !n.is_empty())
            .unwrap_or(application_id);

        let mut body = Map::new();
        body.insert("speckle_type".into(), DATA_OBJECT.into());
        body.insert("applicationId".into(), application_id.into());
        body.insert("name".into(), name.into());
        body.insert("properties".into(), Value::Object(properties));
        body.insert("displayValue".into(), references(&display));
        store.add(body, &display)
    }

    /// Decodes one geometry (if it is SGEO of a kind this module renders) into `into`.
    fn push_geometry(
        &self,
        into: &mut Vec<Shape>,
        geometry: i64,
        transform: Option<&[f64; 16]>,
    ) -> Result<(), BundleError> {
        let Some(blob) = self.geometries.get(&geometry) else {
            return Ok(());
        };
        if !blob.content.starts_with(sgeo::MAGIC) {
            return Ok(()); // a raw (non-SGEO) blob, e.g. a solid: nothing to render
        }
        let shape =
            sgeo::decode(blob.content).map_err(|problem| BundleError::MalformedGeometry {
                file: blob.file.to_owned(),
                index: geometry,
                problem,
            })?;
        if let Some(mut shape) = shape {
            if let Some(t) = transform {
                shape.transform(t);
            }
            into.push(shape);
        }
        Ok(())
    }

    /// Bakes one placement: the definition's geometry under the composed transform, and its
    /// nested placements in turn. `open` holds the definitions being placed around this one,
    /// so that a definition that (indirectly) places itself ends the recursion.
    fn push_placement(
        &self,
        into: &mut Vec<Shape>,
        instance: i64,
        parent: Option<&[f64; 16]>,
        open: &mut Vec<i64>,
    ) -> Result<(), BundleError> {
        let Some(definition) = self.nodes.get(&instance).and_then(|n| n.def_ref) else {
            return Ok(());
        };
        if open.len() > NESTING_GUARD || open.contains(&definition) {
            return Ok(());
        }
        let own = self.nodes.get(&instance).and_then(|n| n.transform.as_ref());
        let transform = match (parent, own) {
            (Some(p), Some(c)) => Some(compose(p, c)),
            (Some(p), None) => Some(*p),
            (None, c) => c.copied(),
        };
        for &geometry in self
            .relations
            .defines
            .get(&definition)
            .into_iter()
            .flatten()
        {
            self.push_geometry(into, geometry, transform.as_ref())?;
        }
        open.push(definition);
        for &nested in self
            .relations
            .defines_instance
            .get(&definition)
            .into_iter()
            .flatten()
        {
            self.push_placement(into, nested, transform.as_ref(), open)?;
        }
        open.pop();
        Ok(())
    }
}

/// The containers reachable from the root through parent → child links (a `def_ref` cycle
/// is not).
fn reachable_from_root(child_containers: &HashMap<Option<i64>, Vec<i64>>) -> HashSet<i64> {
    let mut seen = HashSet::new();
    let mut stack: Vec<i64> = child_containers.get(&None).cloned().unwrap_or_default();
    while let Some(k) = stack.pop() {
        if seen.insert(k) {
            stack.extend(child_containers.get(&Some(k)).into_iter().flatten());
        }
    }
    seen
}

/// The collection tree, for building it bottom-up.
struct Tree<'a> {
    containers: &'a BTreeMap<i64, &'a Node>,
    child_containers: &'a HashMap<Option<i64>, Vec<i64>>,
    objects_in: &'a HashMap<Option<i64>, Vec<Built>>,
}

impl Tree<'_> {
    fn child_containers_of(&self, parent: Option<i64>) -> &[i64] {
        self.child_containers
            .get(&parent)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn objects_of(&self, parent: Option<i64>) -> &[Built] {
        self.objects_in
            .get(&parent)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// One container as a Collection, its child collections and objects before it.
    /// Terminates: only nodes reachable from the root are visited, and those form a tree.
    fn collection(&self, store: &mut Store, k: i64) -> Result<Built, BundleError> {
        let mut elements = Vec::new();
        for &child in self.child_containers_of(Some(k)) {
            elements.push(self.collection(store, child)?);
        }
        elements.extend(self.objects_of(Some(k)).iter().cloned());
        // Unnamed: a generic layer name.
        let name = self
            .containers
            .get(&k)
            .and_then(|n| n.name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or("Layer");
        let mut body = Map::new();
        body.insert("speckle_type".into(), COLLECTION.into());
        body.insert("applicationId".into(), format!("coll-{k}").into());
        body.insert("name".into(), name.into());
        body.insert("elements".into(), references(&elements));
        store.add(body, &elements)
    }
}

/// `a · b` for 4×4 row-major matrices.
fn compose(a: &[f64; 16], b: &[f64; 16]) -> [f64; 16] {
    let mut out = [0.0; 16];
    for row in 0..4 {
        for col in 0..4 {
            out[row * 4 + col] = (0..4).map(|i| a[row * 4 + i] * b[i * 4 + col]).sum();
        }
    }
    out
}

// ── output ──────────────────────────────────────────────────────────────────────────────

const COLLECTION: &str = "Speckle.Core.Models.Collections.Collection";
const DATA_OBJECT: &str = "Objects.Data.DataObject";

/// A stored object: its id and closure, for its parents.
#[derive(Clone)]
struct Built {
    id: String,
    closure: BTreeMap<String, u64>,
}

fn references(children: &[Built]) -> Value {
    Value::Array(
        children
            .iter()
            .map(|c| json!({ "referencedId": c.id, "speckle_type": "reference" }))
            .collect(),
    )
}

/// The objects made so far, children first, each id once.
#[derive(Default)]
struct Store {
    objects: Vec<NewObject>,
    ids: HashSet<String>,
}

impl Store {
    /// Completes `body` (whose references are `children`) with its closure, child count and
    /// id, and keeps it.
    fn add(
        &mut self,
        mut body: Map<String, Value>,
        children: &[Built],
    ) -> Result<Built, BundleError> {
        let mut closure: BTreeMap<String, u64> = BTreeMap::new();
        let mut note = |id: &str, depth: u64| {
            closure
                .entry(id.to_owned())
                .and_modify(|d| *d = (*d).min(depth))
                .or_insert(depth);
        };
        for child in children {
            note(&child.id, 1);
            for (id, depth) in &child.closure {
                note(id, depth + 1);
            }
        }
        let count = closure.len();
        body.insert("totalChildrenCount".into(), count.into());
        let closure_json = (!closure.is_empty()).then(|| {
            Value::Object(
                closure
                    .iter()
                    .map(|(id, &depth)| (id.clone(), Value::from(depth)))
                    .collect(),
            )
        });
        if let Some(c) = &closure_json {
            body.insert("__closure".into(), c.clone());
        }
        // No type: Speckle's base type.
        let speckle_type = body
            .get("speckle_type")
            .and_then(Value::as_str)
            .unwrap_or("Base")
            .to_owned();
        let digest = Sha256::digest(serde_json::to_string(&body)?.as_bytes());
        let id = hex::encode(&digest[..16]);
        body.insert("id".into(), id.clone().into());
        if self.ids.insert(id.clone()) {
            self.objects.push(NewObject {
                id: id.clone(),
                speckle_type,
                // Closures are far below i32::MAX; saturates.
                total_children_count: Some(i32::try_from(count).unwrap_or(i32::MAX)),
                closure: closure_json,
                data: serde_json::to_string(&body)?,
            });
        }
        Ok(Built { id, closure })
    }
}

/// A decoded geometry, ready to write as a Speckle object.
enum Shape {
    Mesh {
        vertices: Vec<f64>,
        faces: Vec<i32>,
        normals: Vec<f64>,
        uvs: Vec<f64>,
        colors: Vec<i32>,
        units: Option<&'static str>,
    },
    Line {
        start: [f64; 3],
        end: [f64; 3],
        domain: (f64, f64),
        units: Option<&'static str>,
    },
    Polyline {
        value: Vec<f64>,
        closed: bool,
        units: Option<&'static str>,
    },
    Points {
        coords: Vec<f64>,
        colors: Vec<i32>,
        sizes: Vec<f64>,
        units: Option<&'static str>,
    },
}

impl Shape {
    /// Applies a placement: points by the full transform, normals by its linear part.
    fn transform(&mut self, t: &[f64; 16]) {
        let point = |p: &mut [f64]| {
            if let [x, y, z] = p {
                let (a, b, c) = (*x, *y, *z);
                *x = t[0] * a + t[1] * b + t[2] * c + t[3];
                *y = t[4] * a + t[5] * b + t[6] * c + t[7];
                *z = t[8] * a + t[9] * b + t[10] * c + t[11];
            }
        };
        match self {
            Shape::Mesh {
                vertices, normals, ..
            } => {
                vertices.chunks_exact_mut(3).for_each(point);
                for n in normals.chunks_exact_mut(3) {
                    if let [x, y, z] = n {
                        let (a, b, c) = (*x, *y, *z);
                        let v = [
                            t[0] * a + t[1] * b + t[2] * c,
                            t[4] * a + t[5] * b + t[6] * c,
                            t[8] * a + t[9] * b + t[10] * c,
                        ];
                        let len = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                        let scale = if len > 0.0 { 1.0 / len } else { 1.0 };
                        (*x, *y, *z) = (v[0] * scale, v[1] * scale, v[2] * scale);
                    }
                }
            }
            Shape::Line { start, end, .. } => {
                point(&mut start[..]);
                point(&mut end[..]);
            }
            Shape::Polyline { value, .. } => value.chunks_exact_mut(3).for_each(point),
            Shape::Points { coords, .. } => coords.chunks_exact_mut(3).for_each(point),
        }
    }

    /// The Speckle object (without id), units falling back to the owner's.
    fn to_json(&self, application_id: &str, fallback_units: Option<&str>) -> Map<String, Value> {
        let mut body = Map::new();
        let units = match self {
            Shape::Mesh { units, .. }
            | Shape::Line { units, .. }
            | Shape::Polyline { units, .. }
            | Shape::Points { units, .. } => units.or(fallback_units),
        };
        if let Some(units) = units {
            body.insert("units".into(), units.into());
        }
        body.insert("applicationId".into(), application_id.into());
        let point = |p: &[f64; 3]| {
            let mut m = Map::new();
            m.insert("speckle_type".into(), "Objects.Geometry.Point".into());
            m.insert("x".into(), p[0].into());
            m.insert("y".into(), p[1].into());
            m.insert("z".into(), p[2].into());
            if let Some(units) = units {
                m.insert("units".into(), units.into());
            }
            Value::Object(m)
        };
        match self {
            Shape::Mesh {
                vertices,
                faces,
                normals,
                uvs,
                colors,
                ..
            } => {
                body.insert("speckle_type".into(), "Objects.Geometry.Mesh".into());
                body.insert("vertices".into(), vertices.clone().into());
                body.insert("faces".into(), faces.clone().into());
                body.insert("colors".into(), colors.clone().into());
                body.insert("textureCoordinates".into(), uvs.clone().into());
                body.insert("vertexNormals".into(), normals.clone().into());
            }
            Shape::Line {
                start, end, domain, ..
            } => {
                body.insert("speckle_type".into(), "Objects.Geometry.Line".into());
                body.insert("start".into(), point(start));
                body.insert("end".into(), point(end));
                body.insert(
                    "domain".into(),
                    json!({ "speckle_type": "Objects.Primitive.Interval", "start": domain.0, "end": domain.1 }),
                );
            }
            Shape::Polyline { value, closed, .. } => {
                body.insert("speckle_type".into(), "Objects.Geometry.Polyline".into());
                body.insert("value".into(), value.clone().into());
                body.insert("closed".into(), (*closed).into());
            }
            Shape::Points {
                coords,
                colors,
                sizes,
                ..
            } => {
                if let ([x, y, z], true, true) =
                    (coords.as_slice(), colors.is_empty(), sizes.is_empty())
                {
                    body.insert("speckle_type".into(), "Objects.Geometry.Point".into());
                    body.insert("x".into(), (*x).into());
                    body.insert("y".into(), (*y).into());
                    body.insert("z".into(), (*z).into());
                } else {
                    // The viewer's point cloud: flat coordinates, as Speckle's .NET SDK
                    // writes it.
                    body.insert("speckle_type".into(), "Objects.Geometry.Pointcloud".into());
                    body.insert("points".into(), coords.clone().into());
                    body.insert("colors".into(), colors.clone().into());
                    body.insert("sizes".into(), sizes.clone().into());
                }
            }
        }
        body
    }
}

/// SGEO v1, Speckle's binary geometry blob (`specklepy/bundle/sgeo.py`): a 16-byte
/// little-endian header, then a body per primitive.
///
/// ```text
/// 0x00 4 magic "SGEO"   0x04 1 version = 1   0x05 1 primitive   0x06 2 flags (u16)
/// 0x08 2 units (u16: 1 mm, 2 cm, 3 m, 4 km, 5 in, 6 ft, 7 yd, 8 mi, else none)
/// 0x0A 2 reserved       0x0C 4 CRC-32 (IEEE) of the body      0x10 body
/// ```
///
/// Bodies read here (u32/i32 little-endian, f64 IEEE little-endian, `pad8` = zero bytes up
/// to the body's next multiple of 8):
/// - MESH (0): `u32 vertexCount, u32 faceCount, f64[3·vertexCount] vertices,
///   i32[faceCount] faces` (Speckle's face list: n, then n indices), then, by flag,
///   `pad8 f64[3·vertexCount] normals` (HAS_NORMALS), `pad8 f64[2·vertexCount] uvs`
///   (HAS_UVS), `i32[vertexCount] colors` (HAS_COLORS, no pad before).
/// - LINE (1): `f64 domainStart, f64 domainEnd, f64[3] start, f64[3] end`.
/// - POLYLINE (2): `u32 pointCount, u32 0, f64[3·pointCount]`; CLOSED flag.
/// - CURVE (4), SPIRAL (9): lead with the same polyline (then `pad8`), their render shape;
///   the analytic rest is not read.
/// - POINTS (7): `u32 count, u32 0, f64[3·count]`, `i32[count] colors` (HAS_COLORS),
///   `pad8 f64[count] sizes` (HAS_SIZES).
mod sgeo {
    use super::Shape;

    pub(super) const MAGIC: &[u8] = b"SGEO";
    const HEADER: usize = 16;

    const MESH: u8 = 0;
    const LINE: u8 = 1;
    const POLYLINE: u8 = 2;
    const CURVE: u8 = 4;
    const POINTS: u8 = 7;
    const SPIRAL: u8 = 9;
    /// The last primitive code SGEO v1 defines (TEXT).
    const LAST_PRIMITIVE: u8 = 12;

    const CLOSED: u16 = 1 << 1;
    const HAS_NORMALS: u16 = 1 << 4;
    const HAS_UVS: u16 = 1 << 5;
    const HAS_COLORS: u16 = 1 << 6;
    const HAS_SIZES: u16 = 1 << 7;

    fn units(code: u16) -> Option<&'static str> {
        match code {
            1 => Some("mm"),
            2 => Some("cm"),
            3 => Some("m"),
            4 => Some("km"),
            5 => Some("in"),
            6 => Some("ft"),
            7 => Some("yd"),
            8 => Some("mi"),
            _ => None,
        }
    }

    /// Decodes a blob: `Ok(None)` for a valid primitive this module does not render.
    pub(super) fn decode(blob: &[u8]) -> Result<Option<Shape>, String> {
        if blob.len() < HEADER {
            return Err(format!(
                "{} bytes is shorter than the {HEADER}-byte header",
                blob.len()
            ));
        }
        let (header, body) = blob.split_at(HEADER);
        if !header.starts_with(MAGIC) {
            return Err("bad magic".into());
        }
        let version = header[4];
        if version != 1 {
            return Err(format!("unsupported SGEO version {version}"));
        }
        let primitive = header[5];
        let flags = u16::from_le_bytes([header[6], header[7]]);
        let units = units(u16::from_le_bytes([header[8], header[9]]));
        let crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let actual = crc32(body);
        if actual != crc {
            return Err(format!(
                "CRC mismatch: header says {crc:#010x}, body hashes to {actual:#010x}"
            ));
        }
        let mut r = Reader { body, at: 0 };
        let shape = match primitive {
            MESH => {
                let vertex_count = r.count()?;
                let face_count = r.count()?;
                let vertices = r.f64s(times(vertex_count, 3)?)?;
                let faces = r.i32s(face_count)?;
                let mut normals = Vec::new();
                if flags & HAS_NORMALS != 0 {
                    r.align8();
                    normals = r.f64s(times(vertex_count, 3)?)?;
                }
                let mut uvs = Vec::new();
                if flags & HAS_UVS != 0 {
                    r.align8();
                    uvs = r.f64s(times(vertex_count, 2)?)?;
                }
                let mut colors = Vec::new();
                if flags & HAS_COLORS != 0 {
                    colors = r.i32s(vertex_count)?;
                }
                if let Some(&bad) = faces_out_of_range(&faces, vertex_count) {
                    return Err(format!("a face refers to vertex {bad} of {vertex_count}"));
                }
                Shape::Mesh {
                    vertices,
                    faces,
                    normals,
                    uvs,
                    colors,
                    units,
                }
            }
            LINE => {
                let domain = (r.f64()?, r.f64()?);
                let start = [r.f64()?, r.f64()?, r.f64()?];
                let end = [r.f64()?, r.f64()?, r.f64()?];
                Shape::Line {
                    start,
                    end,
                    domain,
                    units,
                }
            }
            POLYLINE | CURVE | SPIRAL => {
                let count = r.count()?;
                r.u32()?;
                Shape::Polyline {
                    value: r.f64s(times(count, 3)?)?,
                    closed: flags & CLOSED != 0,
                    units,
                }
            }
            POINTS => {
                let count = r.count()?;
                r.u32()?;
                let coords = r.f64s(times(count, 3)?)?;
                let mut colors = Vec::new();
                if flags & HAS_COLORS != 0 {
                    colors = r.i32s(count)?;
                }
                let mut sizes = Vec::new();
                if flags & HAS_SIZES != 0 {
                    r.align8();
                    sizes = r.f64s(count)?;
                }
                Shape::Points {
                    coords,
                    colors,
                    sizes,
                    units,
                }
            }
            p if p <= LAST_PRIMITIVE => return Ok(None),
            p => return Err(format!("unknown primitive code {p}")),
        };
        Ok(Some(shape))
    }

    /// The first vertex index of a face list (n, then n indices, ...) that is out of range.
    fn faces_out_of_range(faces: &[i32], vertex_count: usize) -> Option<&i32> {
        let mut at = 0;
        while let Some(&n) = faces.get(at) {
            // Legacy encoding: 0 means a triangle, 1 a quad.
            let n = match n {
                0 => 3,
                1 => 4,
                n => usize::try_from(n).unwrap_or(0),
            };
            let end = (at + 1 + n).min(faces.len());
            let face = faces.get(at + 1..end).unwrap_or_default();
            if let Some(bad) = face
                .iter()
                .find(|&&i| usize::try_from(i).ok().is_none_or(|i| i >= vertex_count))
            {
                return Some(bad);
            }
            at = end;
        }
        None
    }

    fn times(count: usize, by: usize) -> Result<usize, String> {
        count
            .checked_mul(by)
            .ok_or_else(|| format!("count {count} overflows"))
    }

    struct Reader<'a> {
        body: &'a [u8],
        at: usize,
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            let end = self.at.checked_add(n).filter(|&e| e <= self.body.len());
            let Some(end) = end else {
                return Err(format!(
                    "body truncated: need {n} bytes at offset {}, {} remain",
                    self.at,
                    self.body.len().saturating_sub(self.at)
                ));
            };
            let out = self.body.get(self.at..end).unwrap_or_default();
            self.at = end;
            Ok(out)
        }

        fn u32(&mut self) -> Result<u32, String> {
            let b = self.take(4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }

        fn count(&mut self) -> Result<usize, String> {
            usize::try_from(self.u32()?).map_err(|e| e.to_string())
        }

        fn f64(&mut self) -> Result<f64, String> {
            let b = self.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(f64::from_le_bytes(a))
        }

        fn f64s(&mut self, count: usize) -> Result<Vec<f64>, String> {
            let bytes = self.take(times(count, 8)?)?;
            Ok(bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a)
                })
                .collect())
        }

        fn i32s(&mut self, count: usize) -> Result<Vec<i32>, String> {
            let bytes = self.take(times(count, 4)?)?;
            Ok(bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }

        fn align8(&mut self) {
            self.at = self.at.next_multiple_of(8);
        }
    }

    /// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zlib computes it.
    pub(super) fn crc32(data: &[u8]) -> u32 {
        const TABLE: [u32; 256] = {
            let mut table = [0u32; 256];
            let mut i = 0;
            while i < 256 {
                let mut c = i as u32;
                let mut bit = 0;
                while bit < 8 {
                    c = if c & 1 != 0 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                    bit += 1;
                }
                table[i] = c;
                i += 1;
            }
            table
        };
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        c ^ 0xFFFF_FFFF
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn crc32_matches_zlib() {
            assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
            assert_eq!(super::crc32(b""), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/samples/bundles");

    fn files(bundle: &str) -> Vec<BundleFile> {
        let mut out: Vec<BundleFile> = std::fs::read_dir(format!("{SAMPLES}/{bundle}"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                BundleFile {
                    name: e.file_name().into_string().unwrap(),
                    bytes: std::fs::read(e.path()).unwrap(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The converted objects by id, parsed.
    fn parsed(converted: &ConvertedBundle) -> HashMap<String, Value> {
        converted
            .objects
            .iter()
            .map(|o| (o.id.clone(), serde_json::from_str(&o.data).unwrap()))
            .collect()
    }

    /// The objects `parent.<field>` references, in order.
    fn children<'a>(
        all: &'a HashMap<String, Value>,
        parent: &Value,
        field: &str,
    ) -> Vec<&'a Value> {
        parent[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["speckle_type"], "reference");
                &all[r["referencedId"].as_str().unwrap()]
            })
            .collect()
    }

    fn is_id(id: &str) -> bool {
        id.len() == 32
            && id
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    }

    /// Every object's id, references, closure and child count are consistent.
    fn assert_well_formed(converted: &ConvertedBundle) {
        let all = parsed(converted);
        assert_eq!(all.len(), converted.objects.len(), "ids are unique");
        assert_eq!(converted.objects.last().unwrap().id, converted.root_id);
        let mut position = HashMap::new();
        for (i, o) in converted.objects.iter().enumerate() {
            position.insert(o.id.clone(), i);
        }
        for o in &converted.objects {
            assert!(is_id(&o.id), "{}", o.id);
            let json = &all[&o.id];
            assert_eq!(json["id"], o.id.as_str());
            assert_eq!(json["speckle_type"], o.speckle_type.as_str());
            // The id is the hash of the JSON without it.
            let mut without = json.as_object().unwrap().clone();
            without.remove("id");
            let digest = Sha256::digest(serde_json::to_string(&without).unwrap().as_bytes());
            assert_eq!(hex::encode(&digest[..16]), o.id);
            // The closure is every descendant at its least depth.
            let mut expected = BTreeMap::new();
            let mut frontier = vec![o.id.clone()];
            let mut depth = 0;
            while !frontier.is_empty() {
                depth += 1;
                let mut next = Vec::new();
                for id in frontier {
                    for field in ["elements", "displayValue"] {
                        for r in all[&id][field].as_array().into_iter().flatten() {
                            let child = r["referencedId"].as_str().unwrap().to_owned();
                            assert!(all.contains_key(&child), "{child} is among the objects");
                            assert!(position[&child] < position[&o.id], "children come first");
                            if !expected.contains_key(&child) {
                                expected.insert(child.clone(), depth);
                                next.push(child);
                            }
                        }
                    }
                }
                frontier = next;
            }
            let closure: BTreeMap<String, u64> = json
                .get("__closure")
                .map(|c| serde_json::from_value(c.clone()).unwrap())
                .unwrap_or_default();
            assert_eq!(closure, expected, "closure of {}", o.id);
            assert_eq!(json["totalChildrenCount"], expected.len());
            assert_eq!(o.total_children_count, Some(expected.len() as i32));
            assert_eq!(o.closure.is_some(), !expected.is_empty());
            if let Some(c) = &o.closure {
                assert_eq!(c, &json["__closure"]);
            }
        }
    }

    #[test]
    fn two_walls_become_a_collection_tree() {
        let converted = objects_from_bundle(&files("two-walls"), "walls model").unwrap();
        assert_well_formed(&converted);
        let all = parsed(&converted);
        let root = &all[&converted.root_id];
        assert_eq!(root["speckle_type"], COLLECTION);
        assert_eq!(root["name"], "walls model");
        assert_eq!(root["units"], "m");

        let top = children(&all, root, "elements");
        assert_eq!(top.len(), 2);
        let (level1, level2) = (top[0], top[1]);
        assert_eq!(level1["speckle_type"], COLLECTION);
        assert_eq!(level1["name"], "Level 1");
        assert_eq!(level2["name"], "Level 2");

        let walls = children(&all, level1, "elements");
        assert_eq!(walls.len(), 1);
        assert_eq!(walls[0]["name"], "Walls");
        assert_eq!(walls[0]["speckle_type"], COLLECTION);

        let in_walls = children(&all, walls[0], "elements");
        assert_eq!(in_walls.len(), 1);
        let wall = in_walls[0];
        assert_eq!(wall["speckle_type"], DATA_OBJECT);
        assert_eq!(wall["applicationId"], "wall-1");
        assert_eq!(wall["name"], "Basic Wall");
        assert_eq!(
            wall["properties"],
            json!({
                "Material": "Concrete",
                "Height": 3.5,
                "Fire Rating": { "Class": "EI60", "Minutes": 60.0 },
                "Thickness": 0.25,
                "Load Bearing": true,
            })
        );
        let meshes = children(&all, wall, "displayValue");
        assert_eq!(meshes.len(), 1);
        let mesh = meshes[0];
        assert_eq!(mesh["speckle_type"], "Objects.Geometry.Mesh");
        assert_eq!(mesh["units"], "m");
        assert_eq!(mesh["applicationId"], "wall-1");
        assert_eq!(
            mesh["vertices"],
            json!([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        );
        assert_eq!(mesh["faces"], json!([3, 0, 1, 2]));
        assert_eq!(mesh["colors"], json!([]));

        let in_level2 = children(&all, level2, "elements");
        assert_eq!(in_level2.len(), 1);
        let slab = in_level2[0];
        assert_eq!(slab["applicationId"], "slab-2");
        assert_eq!(slab["name"], "Floor");
        assert_eq!(
            slab["properties"],
            json!({ "Material": "Timber", "Area": 12.0 })
        );
        let meshes = children(&all, slab, "displayValue");
        assert_eq!(meshes.len(), 2);
        assert_eq!(
            meshes[0]["vertices"],
            json!([0.0, 0.0, 3.0, 2.0, 0.0, 3.0, 2.0, 2.0, 3.0, 0.0, 2.0, 3.0])
        );
        assert_eq!(meshes[0]["faces"], json!([4, 0, 1, 2, 3]));
        assert_eq!(
            meshes[1]["vertices"],
            json!([0.0, 0.0, 4.0, 1.0, 0.0, 4.0, 1.0, 1.0, 4.0])
        );
        assert_eq!(meshes[1]["faces"], json!([3, 0, 1, 2]));
        assert!(meshes.iter().all(|m| m["units"] == "m"));

        // root, 3 collections, 2 objects, 3 meshes
        assert_eq!(converted.objects.len(), 9);
        let root_closure = &root["__closure"];
        assert_eq!(root_closure[level1["id"].as_str().unwrap()], 1);
        assert_eq!(root_closure[walls[0]["id"].as_str().unwrap()], 2);
        assert_eq!(root_closure[wall["id"].as_str().unwrap()], 3);
        assert_eq!(root_closure[mesh["id"].as_str().unwrap()], 4);
        assert_eq!(root["totalChildrenCount"], 8);
    }

    #[test]
    fn ids_are_stable() {
        let a = objects_from_bundle(&files("two-walls"), "m").unwrap();
        let b = objects_from_bundle(&files("two-walls"), "m").unwrap();
        assert_eq!(a.root_id, b.root_id);
        let ids = |c: &ConvertedBundle| c.objects.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        let data =
            |c: &ConvertedBundle| c.objects.iter().map(|o| o.data.clone()).collect::<Vec<_>>();
        assert_eq!(data(&a), data(&b));
        // The model's name is part of the root, so of its id.
        let other = objects_from_bundle(&files("two-walls"), "another").unwrap();
        assert_ne!(other.root_id, a.root_id);
        assert_eq!(other.objects.len(), a.objects.len());
    }

    #[test]
    fn instances_are_baked_into_display_meshes() {
        let converted = objects_from_bundle(&files("instanced"), "furniture").unwrap();
        assert_well_formed(&converted);
        let all = parsed(&converted);
        let root = &all[&converted.root_id];
        let top = children(&all, root, "elements");
        assert_eq!(top.len(), 1);
        assert_eq!(top[0]["name"], "Furniture");
        let objects = children(&all, top[0], "elements");
        assert_eq!(objects.len(), 2);

        let chairs = objects[0];
        assert_eq!(chairs["applicationId"], "chairs");
        assert_eq!(chairs["name"], "Two chairs");
        let meshes = children(&all, chairs, "displayValue");
        assert_eq!(meshes.len(), 2);
        assert_eq!(
            meshes[0]["vertices"],
            json!([10.0, 0.0, 0.0, 11.0, 0.0, 0.0, 10.0, 1.0, 0.0])
        );
        assert_eq!(
            meshes[1]["vertices"],
            json!([0.0, 20.0, 0.0, 1.0, 20.0, 0.0, 0.0, 21.0, 0.0])
        );

        let table = objects[1];
        assert_eq!(table["applicationId"], "table-1");
        let meshes = children(&all, table, "displayValue");
        assert_eq!(meshes.len(), 2);
        // The table's own triangle, then the nested chair placed at (0,0,1) inside it.
        assert_eq!(
            meshes[0]["vertices"],
            json!([100.0, 0.0, 0.0, 102.0, 0.0, 0.0, 100.0, 2.0, 0.0])
        );
        assert_eq!(
            meshes[1]["vertices"],
            json!([100.0, 0.0, 1.0, 101.0, 0.0, 1.0, 100.0, 1.0, 1.0])
        );
        assert!(
            meshes
                .iter()
                .all(|m| m["faces"] == json!([3, 0, 1, 2]) && m["units"] == "m")
        );
    }

    #[test]
    fn an_empty_bundle_gives_an_empty_root() {
        let converted = objects_from_bundle(&files("empty"), "nothing").unwrap();
        assert_well_formed(&converted);
        assert_eq!(converted.objects.len(), 1);
        let root: Value = serde_json::from_str(&converted.objects[0].data).unwrap();
        assert_eq!(root["speckle_type"], COLLECTION);
        assert_eq!(root["name"], "nothing");
        assert_eq!(root["elements"], json!([]));
        assert_eq!(root["totalChildrenCount"], 0);
        assert!(root.get("__closure").is_none());
        assert_eq!(converted.objects[0].closure, None);
        assert_eq!(converted.objects[0].total_children_count, Some(0));
    }

    #[test]
    fn a_missing_objects_table_is_named() {
        let without: Vec<BundleFile> = files("two-walls")
            .into_iter()
            .filter(|f| !f.name.ends_with(".eav.objects.parquet"))
            .collect();
        let err = objects_from_bundle(&without, "m").unwrap_err();
        assert!(matches!(err, BundleError::MissingTable(OBJECTS)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the bundle has no `*.eav.objects.parquet` file"
        );
    }

    #[test]
    fn missing_geometry_shards_are_named() {
        let without: Vec<BundleFile> = files("two-walls")
            .into_iter()
            .filter(|f| !f.name.contains(".geometries"))
            .collect();
        let err = objects_from_bundle(&without, "m").unwrap_err();
        assert!(
            matches!(err, BundleError::MissingTable(GEOMETRIES)),
            "{err:?}"
        );
    }

    #[test]
    fn a_file_that_is_not_parquet_is_named() {
        let mut files = files("two-walls");
        let objects = files
            .iter_mut()
            .find(|f| f.name.ends_with(OBJECTS))
            .unwrap();
        objects.bytes = b"not parquet".to_vec();
        let err = objects_from_bundle(&files, "m").unwrap_err();
        assert!(
            matches!(&err, BundleError::Parquet { file, .. } if file.ends_with(OBJECTS)),
            "{err:?}"
        );
    }

    #[test]
    fn a_table_in_the_wrong_place_gives_a_bad_column() {
        // The paths table where the objects table should be: no `object_index` column.
        let mut files = files("two-walls");
        let paths = files
            .iter()
            .find(|f| f.name.ends_with(PATHS))
            .unwrap()
            .bytes
            .clone();
        let objects = files
            .iter_mut()
            .find(|f| f.name.ends_with(OBJECTS))
            .unwrap();
        objects.bytes = paths;
        let err = objects_from_bundle(&files, "m").unwrap_err();
        assert!(
            matches!(
                &err,
                BundleError::BadColumn {
                    column: "object_index",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn the_geometry_shard_glob() {
        assert!(is_geometry_shard("v1.geometries.parquet"));
        assert!(is_geometry_shard("v1.geometries.2.parquet"));
        assert!(!is_geometry_shard("v1.eav.objects.parquet"));
        assert!(!is_geometry_shard("v1.geometries.parquet.tmp"));
    }

    /// An SGEO blob: header, then `body`.
    fn blob(primitive: u8, flags: u16, units: u16, body: &[u8]) -> Vec<u8> {
        let mut out = b"SGEO".to_vec();
        out.push(1);
        out.push(primitive);
        out.extend(flags.to_le_bytes());
        out.extend(units.to_le_bytes());
        out.extend([0, 0]);
        out.extend(sgeo::crc32(body).to_le_bytes());
        out.extend(body);
        out
    }

    fn le(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn sgeo_mesh_with_normals_uvs_and_colors() {
        let mut body = Vec::new();
        body.extend(3u32.to_le_bytes());
        body.extend(4u32.to_le_bytes());
        body.extend(le(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
        for f in [3i32, 0, 1, 2] {
            body.extend(f.to_le_bytes());
        }
        body.extend(le(&[0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0])); // already 8-aligned
        body.extend(le(&[0.0, 0.0, 1.0, 0.0, 0.0, 1.0]));
        for c in [-1i32, -16_777_216, 255] {
            body.extend(c.to_le_bytes());
        }
        let Some(Shape::Mesh {
            vertices,
            faces,
            normals,
            uvs,
            colors,
            units,
        }) = sgeo::decode(&blob(0, (1 << 4) | (1 << 5) | (1 << 6), 6, &body)).unwrap()
        else {
            panic!("not a mesh");
        };
        assert_eq!(vertices.len(), 9);
        assert_eq!(faces, [3, 0, 1, 2]);
        assert_eq!(normals, [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(uvs, [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(colors, [-1, -16_777_216, 255]);
        assert_eq!(units, Some("ft"));
    }

    #[test]
    fn sgeo_rejects_truncation_bad_crc_and_bad_faces() {
        let mut body = Vec::new();
        body.extend(3u32.to_le_bytes());
        body.extend(4u32.to_le_bytes());
        body.extend(le(&[0.0; 9]));
        for f in [3i32, 0, 1, 7] {
            body.extend(f.to_le_bytes());
        }
        let bad_face = sgeo::decode(&blob(0, 0, 3, &body)).err().unwrap();
        assert!(bad_face.contains("vertex 7"), "{bad_face}");

        let truncated = sgeo::decode(&blob(0, 0, 3, &body[..20])).err().unwrap();
        assert!(truncated.contains("truncated"), "{truncated}");

        let mut corrupt = blob(0, 0, 3, &body);
        corrupt[20] ^= 0xFF;
        let crc = sgeo::decode(&corrupt).err().unwrap();
        assert!(crc.contains("CRC"), "{crc}");

        assert!(sgeo::decode(b"SGEO").is_err());
        assert!(sgeo::decode(&blob(99, 0, 3, &[])).is_err());
        // A valid primitive this module does not render (an arc) is skipped, not an error.
        assert!(sgeo::decode(&blob(5, 0, 3, &[])).unwrap().is_none());
    }

    #[test]
    fn sgeo_line_polyline_and_points() {
        let mut line = le(&[0.0, 1.0]);
        line.extend(le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let Some(Shape::Line {
            start, end, domain, ..
        }) = sgeo::decode(&blob(1, 0, 3, &line)).unwrap()
        else {
            panic!("not a line");
        };
        assert_eq!(
            (start, end, domain),
            ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], (0.0, 1.0))
        );

        let mut polyline = Vec::new();
        polyline.extend(2u32.to_le_bytes());
        polyline.extend(0u32.to_le_bytes());
        polyline.extend(le(&[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]));
        let Some(Shape::Polyline { value, closed, .. }) =
            sgeo::decode(&blob(2, 1 << 1, 3, &polyline)).unwrap()
        else {
            panic!("not a polyline");
        };
        assert_eq!(value, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        assert!(closed);

        let mut point = Vec::new();
        point.extend(1u32.to_le_bytes());
        point.extend(0u32.to_le_bytes());
        point.extend(le(&[1.0, 2.0, 3.0]));
        let shape = sgeo::decode(&blob(7, 0, 3, &point)).unwrap().unwrap();
        let json = shape.to_json("p", None);
        assert_eq!(json["speckle_type"], "Objects.Geometry.Point");
        assert_eq!(
            (json["x"].clone(), json["z"].clone()),
            (json!(1.0), json!(3.0))
        );
        assert_eq!(json["units"], "m");
    }
}
