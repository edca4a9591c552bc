//! File import: a queued ingestion's uploaded file becomes a version. The job
//! (`ingestion.import_file`, one per ingestion) takes the ingestion (`startProcessing`), reads
//! the file from the store, converts it in process with the [`Importer`] for its extension,
//! stores the objects, and completes the ingestion with the root object, so the version goes
//! through the same command path as every version ("File upload: <name>").
//!
//! Never stuck: progress is reported at least every [`PROGRESS_EVERY`] while converting (the
//! idle clock stays quiet), a conversion has a time limit, a cancellation request is honoured
//! at the next report, a file the importer rejects fails the ingestion at once with the
//! importer's reason, and a failure that may pass (the store or the database) is retried by the
//! runner; on the last attempt the ingestion fails with it. A dead worker's job is taken again
//! after its lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use domain::ingestion::{ImportFile, IngestionCommand, SourceData};
use futures::FutureExt;
use futures::future::BoxFuture;
use schema::jobs::ClaimedJob;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::ingestion::{CommandFailure, IngestionControl};
use crate::runner::{JobError, JobHandler, job_input};
use crate::speckle::{Mesh, Tree, argb, collection};

/// The job kind.
pub const KIND: &str = "ingestion.import_file";

/// The longest a conversion goes without a progress report.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The job's input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportJob {
    /// The ingestion.
    pub ingestion_id: String,
    /// Its project.
    pub project_id: String,
    /// The uploaded file.
    pub file: ImportFile,
}

/// Why a file could not be imported, fit to show the person who uploaded it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No importer reads this kind of file.
    #[error("{0} files cannot be imported (supported: {1})")]
    Unsupported(String, String),
    /// The file is not what its extension says, or is damaged.
    #[error("{0}")]
    Malformed(String),
}

mod ifc;

/// One element of an imported model: a named object with properties, meshes and the elements
/// it contains.
#[derive(Clone, Debug, Default)]
pub struct Element {
    /// Name.
    pub name: String,
    /// Properties shown to users.
    pub properties: Map<String, Value>,
    /// Its geometry.
    pub meshes: Vec<Mesh>,
    /// Elements it contains (a storey's walls, an assembly's parts), in file order.
    pub children: Vec<Element>,
    /// Its class in the source format (`IfcWall`), when the format has classes.
    pub class: Option<String>,
    /// Its identity in the source application (an IFC GlobalId), when it has one.
    pub application_id: Option<String>,
}

/// What an importer makes of a file.
#[derive(Clone, Debug, Default)]
pub struct Imported {
    /// The file's units (`m` when the format has none).
    pub units: String,
    /// Its elements.
    pub elements: Vec<Element>,
}

/// Reads one kind of file. Other files the upload names (an OBJ's MTL) are in `companions` by
/// name when the project holds them.
pub trait Importer: Send + Sync + 'static {
    /// The lower-case extensions it reads.
    fn extensions(&self) -> &'static [&'static str];
    /// Converts the file.
    fn import(
        &self,
        file_name: &str,
        bytes: &[u8],
        companions: &HashMap<String, Vec<u8>>,
    ) -> Result<Imported, ImportError>;
    /// The companion files `bytes` refers to, by name (e.g. an OBJ's `mtllib`).
    fn companions(&self, _bytes: &[u8]) -> Vec<String> {
        Vec::new()
    }
    /// About how many times its file size a conversion holds in memory at its peak (measured
    /// with `tests/python/bench_imports.py`), for the admission bound.
    fn memory_factor(&self) -> u64 {
        8
    }
}

/// Wavefront OBJ with MTL colours (`tobj`): one element per object or group.
pub struct Obj;

impl Importer for Obj {
    fn extensions(&self) -> &'static [&'static str] {
        &["obj"]
    }

    /// A 50 MB OBJ peaked at 4.9x its size (session 5's bench).
    fn memory_factor(&self) -> u64 {
        6
    }

    fn companions(&self, bytes: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("mtllib "))
            .flat_map(|names| names.split_whitespace().map(str::to_owned))
            .filter(|n| domain::ingestion::is_bare_file_name(n))
            .collect()
    }

    fn import(
        &self,
        _file_name: &str,
        bytes: &[u8],
        companions: &HashMap<String, Vec<u8>>,
    ) -> Result<Imported, ImportError> {
        if bytes.contains(&0) {
            return Err(ImportError::Malformed(
                "this is not an OBJ file: it contains binary data".into(),
            ));
        }
        let (models, materials) = tobj::load_obj_buf(
            &mut std::io::Cursor::new(bytes),
            &tobj::GPU_LOAD_OPTIONS,
            |path| {
                let name = path.to_string_lossy();
                match companions.get(name.as_ref()) {
                    Some(mtl) => tobj::load_mtl_buf(&mut std::io::Cursor::new(mtl)),
                    None => Err(tobj::LoadError::OpenFileFailed),
                }
            },
        )
        .map_err(|e| ImportError::Malformed(format!("the OBJ file could not be read: {e}")))?;
        // A missing MTL leaves the geometry without colours, as in other viewers.
        let materials = materials.unwrap_or_default();
        let mut elements = Vec::with_capacity(models.len());
        for (i, model) in models.into_iter().enumerate() {
            let m = &model.mesh;
            if m.indices.is_empty() {
                continue;
            }
            let vertex_count = m.positions.len() / 3;
            if let Some(bad) = m.indices.iter().find(|&&x| x as usize >= vertex_count) {
                return Err(ImportError::Malformed(format!(
                    "object {:?} refers to vertex {bad}, but there are {vertex_count}",
                    model.name
                )));
            }
            let material = m.material_id.and_then(|id| materials.get(id)).map(|mat| {
                // No Kd: light grey; no d: opaque.
                let [r, g, b] = mat.diffuse.unwrap_or([0.8, 0.8, 0.8]);
                let opacity = f64::from(mat.dissolve.unwrap_or(1.0));
                (
                    mat.name.clone(),
                    argb(f64::from(r), f64::from(g), f64::from(b), opacity),
                    opacity,
                )
            });
            let mut faces = Vec::with_capacity(m.indices.len() / 3 * 4);
            for t in m.indices.chunks_exact(3) {
                faces.push(3);
                faces.extend(t.iter().map(|&x| u64::from(x)));
            }
            let mut properties = Map::new();
            if let Some((name, _, _)) = &material {
                properties.insert("Material".into(), json!(name));
            }
            elements.push(Element {
                name: if model.name.is_empty() {
                    format!("Object {}", i + 1)
                } else {
                    model.name.clone()
                },
                properties,
                meshes: vec![Mesh {
                    vertices: m.positions.iter().map(|&v| f64::from(v)).collect(),
                    faces,
                    material,
                }],
                ..Element::default()
            });
        }
        if elements.is_empty() {
            return Err(ImportError::Malformed(
                "the OBJ file has no faces to import".into(),
            ));
        }
        Ok(Imported {
            units: "m".into(),
            elements,
        })
    }
}

/// STL, binary or ASCII (`stl_io`): one element with one mesh.
pub struct Stl;

impl Importer for Stl {
    fn extensions(&self) -> &'static [&'static str] {
        &["stl"]
    }

    fn memory_factor(&self) -> u64 {
        6
    }

    fn import(
        &self,
        file_name: &str,
        bytes: &[u8],
        _companions: &HashMap<String, Vec<u8>>,
    ) -> Result<Imported, ImportError> {
        let mesh = stl_io::read_stl(&mut std::io::Cursor::new(bytes))
            .map_err(|e| ImportError::Malformed(format!("the STL file could not be read: {e}")))?;
        if mesh.faces.is_empty() {
            return Err(ImportError::Malformed(
                "the STL file has no triangles".into(),
            ));
        }
        let vertex_count = mesh.vertices.len();
        let mut faces = Vec::with_capacity(mesh.faces.len() * 4);
        for t in &mesh.faces {
            if t.vertices.iter().any(|&v| v >= vertex_count) {
                return Err(ImportError::Malformed(
                    "the STL file refers to a vertex it does not have".into(),
                ));
            }
            faces.push(3);
            faces.extend(t.vertices.iter().map(|&v| v as u64));
        }
        let name = file_name
            .rsplit_once('.')
            .map_or(file_name, |(stem, _)| stem)
            .to_owned();
        let mut properties = Map::new();
        properties.insert("Triangles".into(), json!(mesh.faces.len()));
        Ok(Imported {
            units: "m".into(),
            elements: vec![Element {
                name,
                properties,
                meshes: vec![Mesh {
                    vertices: mesh
                        .vertices
                        .iter()
                        .flat_map(|v| v.0.iter().map(|&c| f64::from(c)))
                        .collect(),
                    faces,
                    material: None,
                }],
                ..Element::default()
            }],
        })
    }
}

/// Every importer strata runs, by extension.
pub fn importers() -> Vec<Arc<dyn Importer>> {
    vec![Arc::new(ifc::Ifc), Arc::new(Obj), Arc::new(Stl)]
}

/// Converts `bytes` with `importer` and refuses what the viewer could not draw: a mesh with a
/// coordinate that is not a finite number (an OBJ may write `nan`, a binary STL holds any bit
/// pattern), a partial vertex, or a face shorter than a triangle, running past the end, or
/// naming a vertex the mesh does not have. Every conversion goes through here, so the rule is
/// in one place whichever importer read the file.
pub fn convert(
    importer: &dyn Importer,
    file_name: &str,
    bytes: &[u8],
    companions: &HashMap<String, Vec<u8>>,
) -> Result<Imported, ImportError> {
    let imported = importer.import(file_name, bytes, companions)?;
    let mut stack: Vec<&Element> = imported.elements.iter().collect();
    while let Some(element) = stack.pop() {
        for mesh in &element.meshes {
            drawable(mesh).map_err(|why| {
                ImportError::Malformed(format!("{:?} cannot be drawn: {why}", element.name))
            })?;
        }
        stack.extend(&element.children);
    }
    Ok(imported)
}

fn drawable(mesh: &Mesh) -> Result<(), &'static str> {
    if !mesh.vertices.len().is_multiple_of(3) {
        return Err("it has a partial vertex");
    }
    if mesh.vertices.iter().any(|v| !v.is_finite()) {
        return Err("a vertex has a coordinate that is not a finite number");
    }
    let vertices = mesh.vertices.len() as u64 / 3;
    let mut at = 0;
    while at < mesh.faces.len() {
        let n = usize::try_from(mesh.faces[at]).unwrap_or(usize::MAX);
        let end = at.checked_add(1).and_then(|a| a.checked_add(n));
        let Some(indices) = end
            .filter(|_| n >= 3)
            .and_then(|end| mesh.faces.get(at + 1..end))
        else {
            return Err("a face is shorter than a triangle or runs past the end");
        };
        if indices.iter().any(|&v| v >= vertices) {
            return Err("a face names a vertex the mesh does not have");
        }
        at += 1 + n;
    }
    Ok(())
}

/// The objects of an imported file: a collection named after the file holding one
/// `DataObject` per top-level element, each with its meshes as `displayValue` and the elements
/// it contains as `elements`. Returns the root's id, its object count and the objects
/// (children first).
pub fn to_objects(
    file_name: &str,
    imported: &Imported,
) -> (String, u32, Vec<schema::objects::NewObject>) {
    fn add(tree: &mut Tree, element: &Element, units: &str) -> crate::speckle::Child {
        let meshes = element
            .meshes
            .iter()
            .map(|m| tree.add(m.fields(units), vec![]))
            .collect();
        let children: Vec<_> = element
            .children
            .iter()
            .map(|c| add(tree, c, units))
            .collect();
        let mut fields = Map::new();
        fields.insert("speckle_type".into(), json!("Objects.Data.DataObject"));
        fields.insert("name".into(), json!(element.name));
        fields.insert(
            "properties".into(),
            Value::Object(element.properties.clone()),
        );
        fields.insert("units".into(), json!(units));
        if let Some(class) = &element.class {
            fields.insert("category".into(), json!(class));
        }
        if let Some(id) = &element.application_id {
            fields.insert("applicationId".into(), json!(id));
        }
        let mut detached = vec![("displayValue", meshes)];
        if !children.is_empty() {
            detached.push(("elements", children));
        }
        tree.add(fields, detached)
    }
    let mut tree = Tree::new();
    let children = imported
        .elements
        .iter()
        .map(|e| add(&mut tree, e, &imported.units))
        .collect();
    let root = tree.add(collection(file_name, "file"), vec![("elements", children)]);
    let objects = tree.into_objects();
    // Saturates; never reached.
    let count = u32::try_from(objects.len().saturating_sub(1)).unwrap_or(u32::MAX);
    (root.id, count, objects)
}

/// Runs `ingestion.import_file`.
pub struct FileImporter {
    pool: sqlx::PgPool,
    store: Option<crate::blobs::BlobStore>,
    control: Arc<dyn IngestionControl>,
    importers: Vec<Arc<dyn Importer>>,
    time_limit: Duration,
    memory_limit_bytes: u64,
}

/// Refuses a file whose conversion would need more memory than `limit` bytes, estimated
/// from its size and the format's measured peak factor.
fn admit(
    file_name: &str,
    file_type: &str,
    size: u64,
    factor: u64,
    limit: u64,
) -> Result<(), String> {
    let needed = size.saturating_mul(factor);
    if needed <= limit {
        return Ok(());
    }
    let mb = |b: u64| b.div_ceil(1024 * 1024);
    Err(format!(
        "{file_name} is {} MB; converting a {} file needs about {factor}x its size in memory \
         ({} MB), the limit is {} MB",
        mb(size),
        file_type.to_uppercase(),
        mb(needed),
        mb(limit)
    ))
}

/// How an attempt ended short of a version.
enum Stop {
    /// The ingestion was finished or cancelled by someone else, or just now: nothing to retry.
    Done,
    /// The file cannot be imported: the ingestion fails with this reason, no retry.
    Rejected(String),
    /// Something that may pass: retried by the runner.
    Retry(String),
}

impl From<CommandFailure> for Stop {
    fn from(f: CommandFailure) -> Self {
        match f {
            CommandFailure::Refused(_) => Self::Done,
            CommandFailure::Failed(m) => Self::Retry(m),
        }
    }
}

impl FileImporter {
    /// An importer storing objects into `pool`, reading files from `store`, giving each
    /// conversion at most `time_limit` and admitting only files whose conversion is estimated
    /// to need at most `memory_limit_bytes`.
    pub fn new(
        pool: sqlx::PgPool,
        store: Option<crate::blobs::BlobStore>,
        control: Arc<dyn IngestionControl>,
        time_limit: Duration,
        memory_limit_bytes: u64,
    ) -> Self {
        Self {
            pool,
            store,
            control,
            importers: importers(),
            time_limit,
            memory_limit_bytes,
        }
    }

    async fn command(&self, id: &str, command: IngestionCommand) -> Result<bool, Stop> {
        let state = self.control.command(id, command).await?;
        Ok(state.is_some_and(|i| i.cancellation_requested))
    }

    /// Reports `message`; stops (cancelling the ingestion) if cancellation was requested.
    async fn report(&self, id: &str, message: String) -> Result<(), Stop> {
        let cancel = self
            .command(
                id,
                IngestionCommand::UpdateProgress {
                    progress_message: message,
                    progress: None,
                },
            )
            .await?;
        if cancel {
            self.command(
                id,
                IngestionCommand::FailWithCancel {
                    message: Some("The import was cancelled.".into()),
                },
            )
            .await?;
            return Err(Stop::Done);
        }
        Ok(())
    }

    async fn attempt(&self, input: &ImportJob) -> Result<(), Stop> {
        let id = input.ingestion_id.as_str();
        let file = &input.file;
        let cancel = self
            .command(
                id,
                IngestionCommand::StartProcessing {
                    progress_message: format!("Importing {}", file.file_name),
                    source: SourceData {
                        source_application_slug: file.file_type.clone(),
                        source_application_version: env!("CARGO_PKG_VERSION").to_owned(),
                        file_name: Some(file.file_name.clone()),
                        file_size_bytes: Some(file.file_size),
                    },
                },
            )
            .await?;
        if cancel {
            self.command(id, IngestionCommand::FailWithCancel { message: None })
                .await?;
            return Err(Stop::Done);
        }
        let Some(importer) = self
            .importers
            .iter()
            .find(|i| i.extensions().contains(&file.file_type.as_str()))
            .cloned()
        else {
            let supported: Vec<&str> = self
                .importers
                .iter()
                .flat_map(|i| i.extensions().iter().copied())
                .collect();
            return Err(Stop::Rejected(
                ImportError::Unsupported(file.file_type.to_uppercase(), supported.join(", "))
                    .to_string(),
            ));
        };
        let admission = |size: u64| {
            admit(
                &file.file_name,
                &file.file_type,
                size,
                importer.memory_factor(),
                self.memory_limit_bytes,
            )
            .map_err(Stop::Rejected)
        };
        // The size the upload was checked with, before fetching anything.
        admission(file.file_size)?;
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| Stop::Retry("no file store is configured".into()))?;
        let key = schema::files::key(&input.project_id, &file.file_id);
        let bytes = store
            .get(&key)
            .await
            .map_err(|e| Stop::Retry(e.to_string()))?
            .ok_or_else(|| Stop::Rejected("the uploaded file is missing from the store".into()))?;
        admission(bytes.len() as u64)?;
        let mut companions = HashMap::new();
        for name in importer.companions(&bytes) {
            let found =
                schema::files::latest_completed_by_name(&self.pool, &input.project_id, &name)
                    .await
                    .map_err(|e| Stop::Retry(e.to_string()))?;
            if let Some(found) = found
                && let Some(data) = store
                    .get(&schema::files::key(&input.project_id, &found))
                    .await
                    .map_err(|e| Stop::Retry(e.to_string()))?
            {
                companions.insert(name, data);
            }
        }
        let name = file.file_name.clone();
        let converting = tokio::task::spawn_blocking(move || {
            convert(importer.as_ref(), &name, &bytes, &companions)
                .map(|imported| to_objects(&name, &imported))
        });
        tokio::pin!(converting);
        let started = tokio::time::Instant::now();
        let converted = loop {
            tokio::select! {
                done = &mut converting => break done,
                () = tokio::time::sleep(PROGRESS_EVERY) => {
                    let elapsed = started.elapsed();
                    if elapsed > self.time_limit {
                        return Err(Stop::Rejected(format!(
                            "the conversion took longer than {} s, the limit",
                            self.time_limit.as_secs()
                        )));
                    }
                    self.report(id, format!("Converting {} ({} s)", file.file_name, elapsed.as_secs())).await?;
                }
            }
        };
        let (root, count, objects) = converted
            .map_err(|e| Stop::Retry(format!("the converter stopped: {e}")))?
            .map_err(|e| Stop::Rejected(e.to_string()))?;
        self.report(id, format!("Storing {} objects", objects.len()))
            .await?;
        for chunk in objects.chunks(1000) {
            schema::objects::insert_batch(&self.pool, &input.project_id, chunk)
                .await
                .map_err(|e| Stop::Retry(e.to_string()))?;
        }
        self.command(
            id,
            IngestionCommand::AcceptUpload {
                root_object_id: root,
                total_children_count: count,
                message: Some(format!("File upload: {}", file.file_name)),
                files: Vec::new(),
            },
        )
        .await?;
        self.control.finish(id).await.map_err(Stop::Retry)
    }
}

impl JobHandler for FileImporter {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
        async move {
            let input: ImportJob = job_input(job)?;
            let reason = match self.attempt(&input).await {
                Ok(()) | Err(Stop::Done) => return Ok(()),
                Err(Stop::Retry(m)) if job.attempt < job.max_attempts => {
                    return Err(JobError::retry(m));
                }
                Err(Stop::Retry(m)) => {
                    format!("The import failed after {} attempts: {m}", job.attempt)
                }
                Err(Stop::Rejected(m)) => {
                    format!("{} could not be imported: {m}", input.file.file_name)
                }
            };
            let fail = IngestionCommand::FailWithError {
                error_reason: reason,
                error_stacktrace: None,
            };
            crate::ingestion::done(self.control.command(&input.ingestion_id, fail).await)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const CUBE_CORNER_OBJ: &str = "mtllib colours.mtl\n\
        o Red\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nusemtl red\nf 1 2 3 4\n\
        o Blue\nv 0 0 1\nv 1 0 1\nv 0 1 1\nusemtl blue\nf 5 6 7\n";
    const COLOURS_MTL: &str = "newmtl red\nKd 1 0 0\nnewmtl blue\nKd 0 0 1\nd 0.5\n";

    #[test]
    fn obj_objects_become_elements_with_their_colours() {
        let companions =
            HashMap::from([("colours.mtl".to_owned(), COLOURS_MTL.as_bytes().to_vec())]);
        assert_eq!(Obj.companions(CUBE_CORNER_OBJ.as_bytes()), ["colours.mtl"]);
        let imported = Obj
            .import("corner.obj", CUBE_CORNER_OBJ.as_bytes(), &companions)
            .unwrap();
        let names: Vec<&str> = imported.elements.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Red", "Blue"]);
        let red = &imported.elements[0].meshes[0];
        assert_eq!(red.face_count(), 2, "the quad is triangulated");
        assert_eq!(red.vertices.len(), 12);
        assert_eq!(red.material.as_ref().unwrap().1, 0xFFFF_0000);
        let blue = imported.elements[1].meshes[0].material.clone().unwrap();
        assert_eq!((blue.0.as_str(), blue.2), ("blue", 0.5));
        // Without the MTL the geometry still comes, uncoloured.
        let plain = Obj
            .import("corner.obj", CUBE_CORNER_OBJ.as_bytes(), &HashMap::new())
            .unwrap();
        assert!(
            plain
                .elements
                .iter()
                .all(|e| e.meshes[0].material.is_none())
        );
    }

    #[test]
    fn stl_binary_and_ascii_give_the_same_triangles() {
        let ascii = "solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\nendfacet\nendsolid t\n";
        let mut binary = vec![0u8; 80];
        binary.extend(1u32.to_le_bytes());
        for v in [0f32, 0., 1., 0., 0., 0., 1., 0., 0., 0., 1., 0.] {
            binary.extend(v.to_le_bytes());
        }
        binary.extend(0u16.to_le_bytes());
        let a = Stl
            .import("a.stl", ascii.as_bytes(), &HashMap::new())
            .unwrap();
        let b = Stl.import("b.stl", &binary, &HashMap::new()).unwrap();
        assert_eq!(a.elements[0].meshes[0].face_count(), 1);
        assert_eq!(b.elements[0].meshes[0].face_count(), 1);
        assert_eq!(a.elements[0].meshes[0].vertices.len(), 9);
        assert_eq!(b.elements[0].meshes[0].vertices.len(), 9);
        assert_eq!(a.elements[0].name, "a");
    }

    #[test]
    fn what_the_viewer_cannot_draw_is_refused() {
        let nan_obj = "o A\nv nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n";
        let e = convert(&Obj, "nan.obj", nan_obj.as_bytes(), &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("not a finite number"), "{e}");
        // A binary STL of one triangle whose first coordinate is NaN.
        let mut stl = vec![0u8; 80];
        stl.extend(1u32.to_le_bytes());
        stl.extend([0u8; 12]); // normal
        for v in [f32::NAN, 0., 0., 1., 0., 0., 0., 1., 0.] {
            stl.extend(v.to_le_bytes());
        }
        stl.extend([0u8; 2]);
        assert!(Stl.import("nan.stl", &stl, &HashMap::new()).is_ok());
        let e = convert(&Stl, "nan.stl", &stl, &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("not a finite number"), "{e}");
        let fine = "o A\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n";
        assert!(convert(&Obj, "ok.obj", fine.as_bytes(), &HashMap::new()).is_ok());
    }

    #[test]
    fn junk_is_refused_with_a_reason() {
        let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        for (importer, name) in [(&Obj as &dyn Importer, "j.obj"), (&Stl, "j.stl")] {
            let e = importer.import(name, &junk, &HashMap::new()).unwrap_err();
            assert!(matches!(e, ImportError::Malformed(_)), "{name}: {e}");
        }
        let truncated = "o A\nv 0 0 0\nv 1 0 0\nf 1 2 3\n";
        assert!(
            Obj.import("t.obj", truncated.as_bytes(), &HashMap::new())
                .is_err()
        );
    }

    #[test]
    fn an_import_is_one_collection_of_data_objects() {
        let imported = Obj
            .import("corner.obj", CUBE_CORNER_OBJ.as_bytes(), &HashMap::new())
            .unwrap();
        let (root, count, objects) = to_objects("corner.obj", &imported);
        assert_eq!(count, 4, "two objects, two meshes");
        let root_json: Value =
            serde_json::from_str(&objects.iter().find(|o| o.id == root).unwrap().data).unwrap();
        assert_eq!(root_json["name"], "corner.obj");
        assert_eq!(root_json["elements"].as_array().unwrap().len(), 2);
        assert_eq!(root_json["totalChildrenCount"], 4);
    }
}
