//! IFC (STEP physical file: IFC2X3, IFC4, IFC4X3) with `ifc-lite` (pure Rust, MPL-2.0).
//!
//! The model becomes its spatial tree: the `IfcProject` holds its sites, buildings, storeys and
//! spaces (`IfcRelAggregates`), each spatial element the elements it contains
//! (`IfcRelContainedInSpatialStructure`), and each element its parts (`IfcRelAggregates`).
//! Every node carries its IFC class, GlobalId, name, property sets and quantities (its type's
//! sets first, overridden by its own) and materials; elements with a body carry their meshes in
//! metres, openings cut, with the colours of their `IfcStyledItem`s (or, failing that, of their
//! material's styled representation). Lengths, areas and volumes in properties are converted to
//! metres, square metres and cubic metres too, so they agree with the geometry.
//!
//! A file that is damaged (a record that does not parse, a truncated file) is refused with the
//! line where reading stopped; an element whose geometry cannot be built keeps its data and
//! loses only its meshes.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use ifc_lite_core::{
    AttributeValue, DecodedEntity, EntityDecoder, EntityIndex, EntityScanner, IfcType,
    ProjectUnits, SchemaVersion,
};
use ifc_lite_geometry::{GeometryRouter, SubMeshCollection};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Map, Number, Value, json};

use super::{Element, ImportError, Imported, Importer};
use crate::speckle::{Mesh, argb};

/// How deep the spatial tree is followed: far beyond any real model, and a bound on what a
/// hostile file can make the importer do.
const MAX_DEPTH: usize = 32;

/// How deep nested properties, mapped items and style chains are followed.
const MAX_NESTING: usize = 8;

/// Products kept in the tree with their data but without meshes: spaces and zones are
/// volumes that would hide the building they are in (IFC viewers hide them too), virtual
/// elements are boundaries, not things.
const NOT_DRAWN: [IfcType; 3] = [
    IfcType::IfcSpace,
    IfcType::IfcSpatialZone,
    IfcType::IfcVirtualElement,
];

/// The schemas the parser has a layout for, as the reason for refusing another names them.
const SUPPORTED_SCHEMAS: &str = "IFC2X3, IFC4, IFC4X1, IFC4X2 and IFC4X3";

/// IFC files (`.ifc`, STEP physical file encoding).
pub struct Ifc;

impl Importer for Ifc {
    fn extensions(&self) -> &'static [&'static str] {
        &["ifc"]
    }

    /// ifc-lite's peak for the 2–3 MB samples: about 12x the file (session 5's bench).
    fn memory_factor(&self) -> u64 {
        16
    }

    fn import(
        &self,
        _file_name: &str,
        bytes: &[u8],
        _companions: &HashMap<String, Vec<u8>>,
    ) -> Result<Imported, ImportError> {
        check_envelope(bytes)?;
        check_schema(bytes)?;
        let scan = Scan::run(bytes)?;
        Model::new(bytes, scan)?.import()
    }
}

fn malformed(reason: impl Into<String>) -> ImportError {
    ImportError::Malformed(reason.into())
}

/// The 1-based line of byte `offset`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The file must be a STEP file: `ISO-10303-21;` first, `END-ISO-10303-21;` last.
fn check_envelope(bytes: &[u8]) -> Result<(), ImportError> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes); // no BOM: as is
    let start = body.trim_ascii_start();
    if start.starts_with(b"PK\x03\x04") {
        return Err(malformed(
            "this is a compressed IFC (ifcZIP) file: unzip it and upload the .ifc file inside",
        ));
    }
    let starts_right = start
        .get(..12)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"ISO-10303-21"));
    if !starts_right {
        let hint = if start.starts_with(b"<") {
            " (ifcXML is not supported)"
        } else if start.starts_with(b"{") {
            " (IFC in JSON is not supported)"
        } else {
            ""
        };
        return Err(malformed(format!(
            "this is not an IFC file: it does not begin with ISO-10303-21{hint}"
        )));
    }
    Ok(())
}

/// Whether the file ends with its `END-ISO-10303-21;` (a comment or blank lines may follow).
fn has_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(16)
        .any(|w| w.eq_ignore_ascii_case(b"END-ISO-10303-21"))
}

/// The header must declare a schema the parser has a layout for.
fn check_schema(bytes: &[u8]) -> Result<(), ImportError> {
    let declared = ifc_lite_core::parser::header::declared_schemas_bounded(bytes);
    if declared
        .iter()
        .any(|label| SchemaVersion::from_file_schema(label).is_some())
    {
        return Ok(());
    }
    match declared.first() {
        Some(label) => Err(malformed(format!(
            "IFC schema {} is not supported (strata reads {SUPPORTED_SCHEMAS})",
            label.trim()
        ))),
        None => Err(malformed(
            "the IFC file does not say which IFC schema it uses (its header has no FILE_SCHEMA)",
        )),
    }
}

/// A record's place in the file.
type Span = (u32, usize, usize);

/// One pass over every record: the index the decoder reads by, and the records the importer
/// starts from.
struct Scan {
    index: Arc<EntityIndex>,
    projects: Vec<u32>,
    /// Every product, in file order.
    products: Vec<u32>,
    aggregates: Vec<Span>,
    containment: Vec<Span>,
    property_rels: Vec<Span>,
    type_rels: Vec<Span>,
    voids: Vec<Span>,
    material_rels: Vec<Span>,
    styled_items: Vec<Span>,
    material_reps: Vec<Span>,
}

impl Scan {
    fn run(bytes: &[u8]) -> Result<Self, ImportError> {
        let mut index = EntityIndex::default();
        index.reserve(bytes.len() / 60);
        let mut scan = Self {
            index: Arc::new(EntityIndex::default()),
            projects: Vec::new(),
            products: Vec::new(),
            aggregates: Vec::new(),
            containment: Vec::new(),
            property_rels: Vec::new(),
            type_rels: Vec::new(),
            voids: Vec::new(),
            material_rels: Vec::new(),
            styled_items: Vec::new(),
            material_reps: Vec::new(),
        };
        let mut scanner = EntityScanner::new(bytes);
        while let Some((id, keyword, start, end)) = scanner.next_entity() {
            index.insert(id, (start, end));
            let span = (id, start, end);
            let kind = IfcType::from_str(keyword);
            match kind {
                IfcType::IfcRelAggregates => scan.aggregates.push(span),
                IfcType::IfcRelContainedInSpatialStructure => scan.containment.push(span),
                IfcType::IfcRelDefinesByProperties => scan.property_rels.push(span),
                IfcType::IfcRelDefinesByType => scan.type_rels.push(span),
                IfcType::IfcRelVoidsElement => scan.voids.push(span),
                IfcType::IfcRelAssociatesMaterial => scan.material_rels.push(span),
                IfcType::IfcStyledItem => scan.styled_items.push(span),
                IfcType::IfcMaterialDefinitionRepresentation => scan.material_reps.push(span),
                IfcType::IfcProject => scan.projects.push(id),
                _ if kind.is_subtype_of(IfcType::IfcProduct) => scan.products.push(id),
                _ => {}
            }
        }
        let complete = has_end(bytes);
        if let Some(at) = scanner.malformed_record_start() {
            let line = line_of(bytes, at);
            return Err(malformed(if complete {
                format!(
                    "the IFC file is damaged: the record on line {line} cannot be read (a quote \
                     or parenthesis is not closed)"
                )
            } else {
                format!(
                    "the IFC file is incomplete: it stops in the middle of the record on line \
                     {line} (was the upload cut off?)"
                )
            }));
        }
        if let Some(&at) = scanner.skipped_oversized_id_starts().first() {
            return Err(malformed(format!(
                "the IFC file is damaged: the record on line {} has an id above {}",
                line_of(bytes, at),
                u32::MAX
            )));
        }
        if !complete {
            return Err(malformed(format!(
                "the IFC file is incomplete: it stops at line {} without END-ISO-10303-21 (was \
                 the upload cut off?)",
                line_of(bytes, bytes.trim_ascii_end().len())
            )));
        }
        if scan.projects.is_empty() {
            return Err(malformed(
                "the IFC file has no IfcProject, so there is no model in it to import",
            ));
        }
        scan.index = Arc::new(index);
        Ok(scan)
    }
}

/// A surface colour: the style's name, RGB and opacity.
#[derive(Clone, Debug, PartialEq)]
struct Colour {
    name: String,
    rgb: [f64; 3],
    opacity: f64,
}

impl Colour {
    fn material(&self) -> (String, u32, f64) {
        let [r, g, b] = self.rgb;
        (self.name.clone(), argb(r, g, b, self.opacity), self.opacity)
    }
}

/// Which unit a measure is in, for converting to SI.
#[derive(Clone, Copy)]
enum Dimension {
    Length,
    Area,
    Volume,
}

impl Dimension {
    /// The dimension of a measure type (`IFCPOSITIVELENGTHMEASURE`), if it is converted.
    fn of_measure(name: &str) -> Option<Self> {
        let name = name.to_ascii_uppercase();
        match name.strip_prefix("IFC").unwrap_or(&name) {
            // the prefix is optional
            "LENGTHMEASURE" | "POSITIVELENGTHMEASURE" | "NONNEGATIVELENGTHMEASURE" => {
                Some(Self::Length)
            }
            "AREAMEASURE" => Some(Self::Area),
            "VOLUMEMEASURE" => Some(Self::Volume),
            _ => None,
        }
    }

    /// The dimension of a quantity's value.
    fn of_quantity(kind: &IfcType) -> Option<Self> {
        match kind {
            IfcType::IfcQuantityLength => Some(Self::Length),
            IfcType::IfcQuantityArea => Some(Self::Area),
            IfcType::IfcQuantityVolume => Some(Self::Volume),
            _ => None,
        }
    }
}

/// Converts a value in `scale` units (metres per unit) to SI, exactly for decimal prefixes:
/// 200 mm is 0.2 m, not 0.2000000000000000111.
fn to_si(value: f64, scale: f64) -> f64 {
    if scale == 1.0 || !scale.is_finite() || scale <= 0.0 {
        return value;
    }
    let inverse = 1.0 / scale;
    if scale < 1.0 && (inverse - inverse.round()).abs() < 1e-9 * inverse {
        value / inverse.round()
    } else {
        value * scale
    }
}

fn number(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// An IFC enumeration or LOGICAL as JSON: `.T.` is `true`, `.F.` `false`, `.U.` `null`.
fn enumeration(value: &str) -> Value {
    match value.to_ascii_uppercase().as_str() {
        "T" | "TRUE" => Value::Bool(true),
        "F" | "FALSE" => Value::Bool(false),
        "U" | "UNKNOWN" => Value::Null,
        _ => Value::String(value.to_owned()),
    }
}

/// The project's units for the measures that are converted.
struct Units {
    project: ProjectUnits,
    length: f64,
}

impl Units {
    /// Metres (square, cubic) per project unit of `dimension`.
    fn scale(&self, dimension: Dimension) -> f64 {
        let unit_type = match dimension {
            Dimension::Length => return self.length,
            Dimension::Area => "AREAUNIT",
            Dimension::Volume => "VOLUMEUNIT",
        };
        self.project
            .resolved_for_unit_type(unit_type)
            .map_or(1.0, |unit| unit.si_scale)
    }
}

/// A property or quantity set: its name and values.
type NamedSet = (String, Map<String, Value>);

/// A model being read.
struct Model<'a> {
    bytes: &'a [u8],
    decoder: EntityDecoder<'a>,
    index: Arc<EntityIndex>,
    units: Units,
    router: GeometryRouter,
    projects: Vec<u32>,
    products: Vec<u32>,
    /// Whole → parts (`IfcRelAggregates`), in file order.
    parts: FxHashMap<u32, Vec<u32>>,
    /// Part → whole.
    part_of: FxHashMap<u32, u32>,
    /// Spatial element → the elements it contains, in file order.
    contents: FxHashMap<u32, Vec<u32>>,
    /// Element → its spatial element.
    contained_in: FxHashMap<u32, u32>,
    /// Object or type → its property set definitions, in file order.
    property_sets: FxHashMap<u32, Vec<u32>>,
    type_of: FxHashMap<u32, u32>,
    material_of: FxHashMap<u32, u32>,
    voids: FxHashMap<u32, Vec<u32>>,
    /// Representation item → its `IfcStyledItem`s.
    styled: FxHashMap<u32, Vec<u32>>,
    /// `IfcMaterial` → the colour of its styled representation.
    material_colours: FxHashMap<u32, Colour>,
    property_set_cache: FxHashMap<u32, Option<NamedSet>>,
    item_colours: FxHashMap<u32, Option<Colour>>,
    style_colours: FxHashMap<u32, Option<Colour>>,
    visited: FxHashSet<u32>,
}

impl<'a> Model<'a> {
    fn new(bytes: &'a [u8], scan: Scan) -> Result<Self, ImportError> {
        let mut decoder = EntityDecoder::with_arc_index(bytes, Arc::clone(&scan.index));
        let project_units = match scan.projects.first() {
            Some(&project) => ProjectUnits::resolve(&mut decoder, project),
            None => ProjectUnits::default(),
        };
        let length = decoder.length_unit_scale();
        if !length.is_finite() || length <= 0.0 {
            return Err(malformed(
                "the IFC file's length unit is not a usable unit, so its geometry cannot be placed",
            ));
        }
        let mut router = GeometryRouter::with_scale_and_local_frame(length, true);
        router.enable_content_dedup_shared(GeometryRouter::new_dedup_cache());
        let mut model = Self {
            bytes,
            decoder,
            index: scan.index,
            units: Units {
                project: project_units,
                length,
            },
            router,
            projects: scan.projects,
            products: scan.products,
            parts: FxHashMap::default(),
            part_of: FxHashMap::default(),
            contents: FxHashMap::default(),
            contained_in: FxHashMap::default(),
            property_sets: FxHashMap::default(),
            type_of: FxHashMap::default(),
            material_of: FxHashMap::default(),
            voids: FxHashMap::default(),
            styled: FxHashMap::default(),
            material_colours: FxHashMap::default(),
            property_set_cache: FxHashMap::default(),
            item_colours: FxHashMap::default(),
            style_colours: FxHashMap::default(),
            visited: FxHashSet::default(),
        };
        model.relations(&scan.aggregates, &scan.containment)?;
        for rel in model.decode_all(&scan.property_rels)? {
            // RelatedObjects (4), RelatingPropertyDefinition (5): one set, or a set of sets.
            let definitions = rel.get_refs(5).unwrap_or_default();
            for object in rel.get_refs(4).unwrap_or_default() {
                model
                    .property_sets
                    .entry(object)
                    .or_default()
                    .extend(&definitions);
            }
        }
        for rel in model.decode_all(&scan.type_rels)? {
            // RelatedObjects (4), RelatingType (5).
            if let Some(kind) = rel.get_ref(5) {
                for object in rel.get_refs(4).unwrap_or_default() {
                    model.type_of.entry(object).or_insert(kind);
                }
            }
        }
        for rel in model.decode_all(&scan.material_rels)? {
            // RelatedObjects (4), RelatingMaterial (5).
            if let Some(material) = rel.get_ref(5) {
                for object in rel.get_refs(4).unwrap_or_default() {
                    model.material_of.entry(object).or_insert(material);
                }
            }
        }
        for styled in model.decode_all(&scan.styled_items)? {
            // Item (0); a styled item without one styles a material's representation.
            if let Some(item) = styled.get_ref(0) {
                model.styled.entry(item).or_default().push(styled.id);
            }
        }
        model.material_representations(&scan.material_reps)?;
        // Host → openings, propagated to aggregated parts (the same index ifc-lite's own
        // pipeline builds).
        model.voids = ifc_lite_geometry::resolve_void_index(
            &scan.voids,
            &scan.aggregates,
            &mut model.decoder,
        );
        Ok(model)
    }

    /// `IfcRelAggregates` and `IfcRelContainedInSpatialStructure`.
    fn relations(&mut self, aggregates: &[Span], containment: &[Span]) -> Result<(), ImportError> {
        // RelatingObject (4) → RelatedObjects (5).
        for rel in self.decode_all(aggregates)? {
            if let Some(whole) = rel.get_ref(4) {
                let parts = rel.get_refs(5).unwrap_or_default();
                for &part in &parts {
                    self.part_of.entry(part).or_insert(whole);
                }
                self.parts.entry(whole).or_default().extend(parts);
            }
        }
        // RelatedElements (4) → RelatingStructure (5).
        for rel in self.decode_all(containment)? {
            if let Some(structure) = rel.get_ref(5) {
                let elements = rel.get_refs(4).unwrap_or_default();
                for &element in &elements {
                    self.contained_in.entry(element).or_insert(structure);
                }
                self.contents.entry(structure).or_default().extend(elements);
            }
        }
        Ok(())
    }

    /// The children of `id`: its parts, then the elements it contains that are not a part of
    /// something else (an assembly's parts stay under the assembly even when the storey also
    /// lists them).
    fn children(&self, id: u32) -> Vec<u32> {
        let mut children = self.parts.get(&id).cloned().unwrap_or_default();
        if let Some(contents) = self.contents.get(&id) {
            children.extend(contents.iter().filter(|c| {
                self.part_of
                    .get(c)
                    .is_none_or(|whole| *whole == id || !self.index.contains_key(whole))
            }));
        }
        children
    }

    /// `IfcMaterialDefinitionRepresentation`: a material's colour, from the styled items of
    /// its `IfcStyledRepresentation`s.
    fn material_representations(&mut self, spans: &[Span]) -> Result<(), ImportError> {
        for rep in self.decode_all(spans)? {
            // Representations (2), RepresentedMaterial (3).
            let Some(material) = rep.get_ref(3) else {
                continue;
            };
            'found: for representation in rep.get_refs(2).unwrap_or_default() {
                let Some(styled_rep) = self.entity(representation)? else {
                    continue;
                };
                // IfcStyledRepresentation.Items (3): IfcStyledItems.
                for item in styled_rep.get_refs(3).unwrap_or_default() {
                    if let Some(colour) = self.styled_item_colour(item)? {
                        self.material_colours.insert(material, colour);
                        break 'found;
                    }
                }
            }
        }
        Ok(())
    }

    fn decode_all(&mut self, spans: &[Span]) -> Result<Vec<DecodedEntity>, ImportError> {
        spans
            .iter()
            .map(|&(id, start, end)| {
                self.decoder
                    .decode_at_with_id(id, start, end)
                    .map_err(|_| self.unreadable(id, (start, end)))
            })
            .collect()
    }

    /// A record that is whole but does not parse, shown by its line and beginning.
    fn unreadable(&self, id: u32, span: (usize, usize)) -> ImportError {
        let (start, end) = span;
        let record = String::from_utf8_lossy(self.bytes.get(start..end).unwrap_or_default());
        let head: String = record.chars().take(100).collect();
        let more = if head.len() < record.len() { "…" } else { "" };
        malformed(format!(
            "the IFC file is damaged: record #{id} on line {} cannot be read: {head}{more}",
            line_of(self.bytes, start)
        ))
    }

    /// The record `id`; `None` when the file has none (a dangling reference is skipped, as
    /// other IFC readers do), an error when it exists but cannot be read.
    fn entity(&mut self, id: u32) -> Result<Option<DecodedEntity>, ImportError> {
        let Some(&span) = self.index.get(&id) else {
            return Ok(None);
        };
        self.decoder
            .decode_by_id(id)
            .map(Some)
            .map_err(|_| self.unreadable(id, span))
    }

    fn import(mut self) -> Result<Imported, ImportError> {
        let mut elements = Vec::new();
        for project in self.projects.clone() {
            if let Some(root) = self.node(project, 0)? {
                elements.push(root);
            }
        }
        // Products outside the project's tree (a file with a broken spatial structure) are
        // kept after it, when there is something to show: first those that are part of
        // nothing, with their parts, then any left.
        for roots_only in [true, false] {
            for product in self.products.clone() {
                let root = !self.part_of.contains_key(&product)
                    && !self.contained_in.contains_key(&product);
                if (root || !roots_only)
                    && !self.visited.contains(&product)
                    && let Some(element) = self.node(product, 0)?
                    && (!element.meshes.is_empty() || !element.children.is_empty())
                {
                    elements.push(element);
                }
            }
        }
        Ok(Imported {
            units: "m".into(),
            elements,
        })
    }

    /// The element for `id` with its subtree; `None` for a record that is not part of the
    /// tree (an opening, a type, one already placed elsewhere).
    fn node(&mut self, id: u32, depth: usize) -> Result<Option<Element>, ImportError> {
        if depth > MAX_DEPTH || !self.visited.insert(id) {
            return Ok(None);
        }
        let Some(entity) = self.entity(id)? else {
            return Ok(None);
        };
        let kind = &entity.ifc_type;
        let in_tree = (kind.is_subtype_of(IfcType::IfcProduct)
            && !kind.is_subtype_of(IfcType::IfcFeatureElementSubtraction))
            || kind.is_subtype_of(IfcType::IfcContext);
        if !in_tree {
            return Ok(None);
        }
        let mut element = self.element(&entity)?;
        for child in self.children(id) {
            if let Some(child) = self.node(child, depth + 1)? {
                element.children.push(child);
            }
        }
        Ok(Some(element))
    }

    fn element(&mut self, entity: &DecodedEntity) -> Result<Element, ImportError> {
        let kind = &entity.ifc_type;
        let class = kind.name().to_owned();
        let global_id = entity.get_string(0).map(str::to_owned);
        let text = |i: usize| {
            entity
                .get_string(i)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let spatial = kind.is_subtype_of(IfcType::IfcSpatialElement);
        let long_name = if spatial {
            text(7)
        } else if kind.is_subtype_of(IfcType::IfcContext) {
            text(5)
        } else {
            None
        };
        let name = text(2)
            .or_else(|| long_name.clone())
            .unwrap_or_else(|| class.clone());

        // Property sets first, the type's then the occurrence's; the attributes after them, so
        // a set that happens to share a name with one cannot hide it.
        let mut properties = Map::new();
        let type_id = self.type_of.get(&entity.id).copied();
        let type_object = match type_id {
            Some(type_id) => self.entity(type_id)?,
            None => None,
        };
        if let Some(type_object) = &type_object {
            // IfcTypeObject.HasPropertySets (5), then sets related to the type.
            let mut sets = type_object.get_refs(5).unwrap_or_default();
            sets.extend(
                self.property_sets
                    .get(&type_object.id)
                    .cloned()
                    .unwrap_or_default(),
            );
            self.add_property_sets(&mut properties, &sets)?;
        }
        let own = self
            .property_sets
            .get(&entity.id)
            .cloned()
            .unwrap_or_default();
        self.add_property_sets(&mut properties, &own)?;

        properties.insert("IFC Class".into(), json!(class));
        if let Some(id) = &global_id {
            properties.insert("GlobalId".into(), json!(id));
        }
        if let Some(description) = text(3) {
            properties.insert("Description".into(), json!(description));
        }
        if let Some(object_type) = text(4).filter(|_| !kind.is_subtype_of(IfcType::IfcContext)) {
            properties.insert("ObjectType".into(), json!(object_type));
        }
        if let Some(long_name) = long_name {
            properties.insert("LongName".into(), json!(long_name));
        }
        if kind.is_subtype_of(IfcType::IfcElement)
            && let Some(tag) = text(7)
        {
            properties.insert("Tag".into(), json!(tag));
        }
        if *kind == IfcType::IfcBuildingStorey
            && let Some(elevation) = entity.get_float(9)
        {
            properties.insert(
                "Elevation".into(),
                number(to_si(elevation, self.units.length)),
            );
        }
        if let Some(type_object) = &type_object {
            let type_name = type_object
                .get_string(2)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map_or_else(|| type_object.ifc_type.name().to_owned(), str::to_owned);
            properties.insert("Type".into(), json!(type_name));
        }

        let material = self
            .material_of
            .get(&entity.id)
            .or_else(|| type_id.and_then(|t| self.material_of.get(&t)))
            .copied();
        let mut material_colour = None;
        if let Some(material) = material {
            let materials = self.materials(material)?;
            let mut names: Vec<String> = Vec::new();
            for &m in &materials {
                if let Some(found) = self.entity(m)?
                    && let Some(n) = found.get_string(0)
                    && !names.iter().any(|known| known == n)
                {
                    names.push(n.to_owned());
                }
            }
            material_colour = materials
                .iter()
                .find_map(|m| self.material_colours.get(m).cloned());
            match names.len() {
                0 => {}
                1 => {
                    properties.insert("Material".into(), json!(names[0]));
                }
                _ => {
                    properties.insert("Material".into(), json!(names));
                }
            }
        }

        let meshes = self.meshes(entity, material_colour.as_ref())?;
        Ok(Element {
            name,
            properties,
            meshes,
            children: Vec::new(),
            class: Some(class),
            application_id: global_id,
        })
    }

    /// The `IfcMaterial`s of a material selection (a layer set, a list, constituents,
    /// profiles), in order.
    fn materials(&mut self, root: u32) -> Result<Vec<u32>, ImportError> {
        let mut found = Vec::new();
        let mut stack = vec![(root, 0usize)];
        let mut seen = FxHashSet::default();
        while let Some((id, depth)) = stack.pop() {
            if depth > MAX_NESTING || !seen.insert(id) {
                continue;
            }
            let Some(entity) = self.entity(id)? else {
                continue;
            };
            let next: Vec<u32> = match entity.ifc_type {
                IfcType::IfcMaterial => {
                    found.push(id);
                    continue;
                }
                // ForLayerSet (0), MaterialLayers (0), Material (0), Materials (0),
                // ForProfileSet (0).
                IfcType::IfcMaterialLayerSetUsage
                | IfcType::IfcMaterialLayerSet
                | IfcType::IfcMaterialLayer
                | IfcType::IfcMaterialLayerWithOffsets
                | IfcType::IfcMaterialList
                | IfcType::IfcMaterialProfileSetUsage
                | IfcType::IfcMaterialProfileSetUsageTapering => {
                    entity.get_refs(0).unwrap_or_default()
                }
                // MaterialConstituents (2), Material (2), MaterialProfiles (2).
                IfcType::IfcMaterialConstituentSet
                | IfcType::IfcMaterialConstituent
                | IfcType::IfcMaterialProfileSet
                | IfcType::IfcMaterialProfile
                | IfcType::IfcMaterialProfileWithOffsets => entity.get_refs(2).unwrap_or_default(),
                _ => Vec::new(),
            };
            // Reversed onto the stack so they come off in file order.
            stack.extend(next.into_iter().rev().map(|n| (n, depth + 1)));
        }
        Ok(found)
    }

    /// Adds property sets and quantity sets, each under its name; a later set's values
    /// override an earlier one's of the same name (an occurrence's over its type's).
    fn add_property_sets(
        &mut self,
        properties: &mut Map<String, Value>,
        sets: &[u32],
    ) -> Result<(), ImportError> {
        for &set in sets {
            let Some((name, values)) = self.property_set(set)? else {
                continue;
            };
            match properties.get_mut(&name) {
                Some(Value::Object(existing)) => existing.extend(values),
                _ => {
                    properties.insert(name, Value::Object(values));
                }
            }
        }
        Ok(())
    }

    /// A property set or quantity set as its name and values; read once, as many objects
    /// (all occurrences of a type) share one.
    fn property_set(&mut self, set: u32) -> Result<Option<NamedSet>, ImportError> {
        if let Some(known) = self.property_set_cache.get(&set) {
            return Ok(known.clone());
        }
        let Some(entity) = self.entity(set)? else {
            return Ok(None);
        };
        // HasProperties (4) of a property set, Quantities (5) of a quantity set; predefined
        // property sets (door linings, window panels) are not read.
        let (members, quantities) = match entity.ifc_type {
            IfcType::IfcPropertySet => (entity.get_refs(4), false),
            IfcType::IfcElementQuantity => (entity.get_refs(5), true),
            _ => return Ok(None),
        };
        let name = entity
            .get_string(2)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map_or_else(|| entity.ifc_type.name().to_owned(), str::to_owned);
        let mut values = Map::new();
        for member in members.unwrap_or_default() {
            let read = if quantities {
                self.quantity(member, 0)?
            } else {
                self.property(member, 0)?
            };
            if let Some((key, value)) = read {
                values.insert(key, value);
            }
        }
        let read = Some((name, values));
        self.property_set_cache.insert(set, read.clone());
        Ok(read)
    }

    /// Entity `id`, a member of a property or quantity set at nesting `depth`, and its name;
    /// none when nested too deep, missing or unnamed.
    fn named_member(
        &mut self,
        id: u32,
        depth: usize,
    ) -> Result<Option<(DecodedEntity, String)>, ImportError> {
        if depth > MAX_NESTING {
            return Ok(None);
        }
        let Some(entity) = self.entity(id)? else {
            return Ok(None);
        };
        let Some(name) = entity.get_string(0).map(str::to_owned) else {
            return Ok(None);
        };
        Ok(Some((entity, name)))
    }

    /// One `IfcProperty` as (name, value).
    fn property(&mut self, id: u32, depth: usize) -> Result<Option<(String, Value)>, ImportError> {
        let Some((entity, name)) = self.named_member(id, depth)? else {
            return Ok(None);
        };
        let null = AttributeValue::Null;
        let attr = |i: usize| entity.get(i).unwrap_or(&null); // absent reads as unset ($)
        let value = match entity.ifc_type {
            // NominalValue (2), Unit (3).
            IfcType::IfcPropertySingleValue => {
                let scale = self.explicit_scale(entity.get_ref(3))?;
                self.value(attr(2), scale)
            }
            // EnumerationValues (2).
            IfcType::IfcPropertyEnumeratedValue => match attr(2).as_list() {
                Some([one]) => self.value(one, None),
                _ => self.value(attr(2), None),
            },
            // ListValues (2), Unit (3).
            IfcType::IfcPropertyListValue => {
                let scale = self.explicit_scale(entity.get_ref(3))?;
                self.value(attr(2), scale)
            }
            // UpperBoundValue (2), LowerBoundValue (3), Unit (4), SetPointValue (5, IFC4).
            IfcType::IfcPropertyBoundedValue => {
                let scale = self.explicit_scale(entity.get_ref(4))?;
                let mut bounds = Map::new();
                for (key, i) in [("Lower", 3), ("Upper", 2), ("SetPoint", 5)] {
                    if !attr(i).is_null() {
                        bounds.insert(key.into(), self.value(attr(i), scale));
                    }
                }
                Value::Object(bounds)
            }
            // DefiningValues (2) → DefinedValues (3).
            IfcType::IfcPropertyTableValue => {
                let mut table = Map::new();
                if let (Some(defining), Some(defined)) = (attr(2).as_list(), attr(3).as_list()) {
                    for (key, value) in defining.iter().zip(defined) {
                        let key = match self.value(key, None) {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        table.insert(key, self.value(value, None));
                    }
                }
                Value::Object(table)
            }
            // PropertyReference (3): shown by its name.
            IfcType::IfcPropertyReferenceValue => match entity.get_ref(3) {
                Some(reference) => match self.entity(reference)? {
                    Some(target) => target
                        .get_string(0)
                        .or_else(|| target.get_string(2))
                        .map_or_else(|| json!(target.ifc_type.name()), |s| json!(s)),
                    None => Value::Null,
                },
                None => Value::Null,
            },
            // HasProperties (3).
            IfcType::IfcComplexProperty => {
                let mut nested = Map::new();
                for member in entity.get_refs(3).unwrap_or_default() {
                    if let Some((key, value)) = self.property(member, depth + 1)? {
                        nested.insert(key, value);
                    }
                }
                Value::Object(nested)
            }
            _ => return Ok(None),
        };
        Ok(Some((name, value)))
    }

    /// One `IfcPhysicalQuantity` as (name, value), lengths, areas and volumes in SI.
    fn quantity(&mut self, id: u32, depth: usize) -> Result<Option<(String, Value)>, ImportError> {
        let Some((entity, name)) = self.named_member(id, depth)? else {
            return Ok(None);
        };
        let value = match entity.ifc_type {
            // HasQuantities (2).
            IfcType::IfcPhysicalComplexQuantity => {
                let mut nested = Map::new();
                for member in entity.get_refs(2).unwrap_or_default() {
                    if let Some((key, value)) = self.quantity(member, depth + 1)? {
                        nested.insert(key, value);
                    }
                }
                Value::Object(nested)
            }
            // Name, Description, Unit (2), the value (3).
            ref kind if kind.is_subtype_of(IfcType::IfcPhysicalSimpleQuantity) => {
                let Some(raw) = entity.get(3) else {
                    return Ok(None);
                };
                let scale = match (Dimension::of_quantity(kind), entity.get_ref(2)) {
                    (None, _) => None,
                    (Some(_), Some(unit)) => self.unit_scale(unit)?,
                    (Some(dimension), None) => Some(self.units.scale(dimension)),
                };
                match (raw, scale) {
                    (AttributeValue::Integer(i), None) => json!(i),
                    _ => match raw.as_float() {
                        // No dimension: the value as written.
                        Some(v) => number(to_si(v, scale.unwrap_or(1.0))),
                        None => self.value(raw, None),
                    },
                }
            }
            _ => return Ok(None),
        };
        Ok(Some((name, value)))
    }

    /// The SI scale of a property's own `Unit`, if it has one.
    fn explicit_scale(&mut self, unit: Option<u32>) -> Result<Option<f64>, ImportError> {
        match unit {
            Some(unit) => self.unit_scale(unit),
            None => Ok(None),
        }
    }

    fn unit_scale(&mut self, unit: u32) -> Result<Option<f64>, ImportError> {
        // Read first, so a damaged unit record is reported like any other.
        if self.entity(unit)?.is_none() {
            return Ok(None);
        }
        Ok(ifc_lite_core::resolve_unit_by_ref(&mut self.decoder, unit)
            .map(|(_, resolved, _)| resolved.si_scale))
    }

    /// A property value as JSON. Typed lengths, areas and volumes are converted to SI with
    /// `scale` (a property's own unit) or the project's unit.
    fn value(&self, value: &AttributeValue, scale: Option<f64>) -> Value {
        match value {
            AttributeValue::Typed { name, value } => {
                match (Dimension::of_measure(name), value.as_float()) {
                    (Some(dimension), Some(v)) => number(to_si(
                        v,
                        scale.unwrap_or_else(|| self.units.scale(dimension)),
                    )),
                    _ => self.value(value, scale),
                }
            }
            AttributeValue::String(s) => Value::String(s.clone()),
            AttributeValue::Integer(i) => json!(i),
            AttributeValue::Float(f) => number(*f),
            AttributeValue::Enum(e) => enumeration(e),
            AttributeValue::Binary(hex) => Value::String(hex.clone()),
            AttributeValue::List(items) => {
                Value::Array(items.iter().map(|i| self.value(i, scale)).collect())
            }
            AttributeValue::EntityRef(_) | AttributeValue::Null | AttributeValue::Derived => {
                Value::Null
            }
        }
    }

    /// The element's body as meshes in metres, one per colour.
    fn meshes(
        &mut self,
        entity: &DecodedEntity,
        material_colour: Option<&Colour>,
    ) -> Result<Vec<Mesh>, ImportError> {
        let kind = &entity.ifc_type;
        let has_body = ifc_lite_core::has_geometry_by_name(kind.as_str())
            && !NOT_DRAWN
                .iter()
                .any(|hidden| kind.is_subtype_of(hidden.clone()))
            && entity.get(6).is_some_and(|r| !r.is_null());
        if !has_body {
            return Ok(Vec::new());
        }
        let Some(parts) = self.geometry(entity) else {
            return Ok(Vec::new());
        };
        let mut meshes: Vec<Mesh> = Vec::new();
        let mut colours: Vec<Option<Colour>> = Vec::new();
        for part in parts.sub_meshes {
            let mesh = part.mesh;
            if mesh.indices.len() < 3 {
                continue;
            }
            let colour = self
                .item_colour(part.geometry_id, 0)?
                .or_else(|| material_colour.cloned());
            let at = match colours.iter().position(|c| *c == colour) {
                Some(at) => at,
                None => {
                    meshes.push(Mesh {
                        material: colour.as_ref().map(Colour::material),
                        ..Mesh::default()
                    });
                    colours.push(colour);
                    meshes.len() - 1
                }
            };
            let out = &mut meshes[at];
            // usize fits in u64 on our targets.
            let base = u64::try_from(out.vertices.len() / 3).unwrap_or(u64::MAX);
            let vertex_count = mesh.positions.len() / 3;
            out.vertices.reserve(mesh.positions.len());
            // Positions are relative to the mesh's origin (ifc-lite's local frame, which keeps
            // f32 precise far from the project origin).
            for p in mesh.positions.chunks_exact(3) {
                out.vertices
                    .extend(p.iter().zip(mesh.origin).map(|(&v, o)| o + f64::from(v)));
            }
            out.faces.reserve(mesh.indices.len() / 3 * 4);
            for t in mesh.indices.chunks_exact(3) {
                if t.iter().any(|&i| i as usize >= vertex_count) {
                    continue;
                }
                out.faces.push(3);
                out.faces.extend(t.iter().map(|&i| base + u64::from(i)));
            }
        }
        meshes.retain(|m| !m.faces.is_empty());
        Ok(meshes)
    }

    /// The element's body from ifc-lite, openings cut; `None` when it has none or it cannot
    /// be built (the element keeps its data). A body whose openings cannot be cut is kept
    /// uncut.
    fn geometry(&mut self, entity: &DecodedEntity) -> Option<SubMeshCollection> {
        let Self {
            router,
            decoder,
            voids,
            ..
        } = self;
        let class = entity.ifc_type.name();
        if voids.get(&entity.id).is_some_and(|o| !o.is_empty()) {
            let cut = catch_unwind(AssertUnwindSafe(|| {
                router.process_element_with_submeshes_and_voids(entity, decoder, voids)
            }));
            match cut {
                Ok(Ok(parts)) if !parts.sub_meshes.is_empty() => return Some(parts),
                // Openings that remove the whole element leave nothing to show.
                Ok(Ok(_)) if router.host_consumed_by_void(entity.id) => return None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(id = entity.id, class, "IFC openings not cut: {e}");
                }
                Err(_) => tracing::warn!(id = entity.id, class, "IFC openings not cut: panic"),
            }
        }
        let body = catch_unwind(AssertUnwindSafe(|| {
            router.process_element_with_submeshes(entity, decoder)
        }));
        match body {
            Ok(Ok(parts)) if !parts.sub_meshes.is_empty() => Some(parts),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::warn!(id = entity.id, class, "IFC element without geometry: {e}");
                None
            }
            Err(_) => {
                tracing::warn!(id = entity.id, class, "IFC element without geometry: panic");
                None
            }
        }
    }

    /// The colour of a representation item: its own styled item's, or for a mapped item
    /// the first of its source's items that has one.
    fn item_colour(&mut self, item: u32, depth: usize) -> Result<Option<Colour>, ImportError> {
        if let Some(known) = self.item_colours.get(&item) {
            return Ok(known.clone());
        }
        if depth > MAX_NESTING {
            return Ok(None);
        }
        let mut colour = None;
        for styled in self.styled.get(&item).cloned().unwrap_or_default() {
            colour = self.styled_item_colour(styled)?;
            if colour.is_some() {
                break;
            }
        }
        if colour.is_none()
            && let Some(entity) = self.entity(item)?
            && entity.ifc_type == IfcType::IfcMappedItem
            // MappingSource (0): IfcRepresentationMap.MappedRepresentation (1).Items (3).
            && let Some(source) = entity.get_ref(0)
            && let Some(map) = self.entity(source)?
            && let Some(representation) = map.get_ref(1)
            && let Some(representation) = self.entity(representation)?
        {
            for inner in representation.get_refs(3).unwrap_or_default() {
                colour = self.item_colour(inner, depth + 1)?;
                if colour.is_some() {
                    break;
                }
            }
        }
        self.item_colours.insert(item, colour.clone());
        Ok(colour)
    }

    /// The surface colour an `IfcStyledItem` gives.
    fn styled_item_colour(&mut self, styled: u32) -> Result<Option<Colour>, ImportError> {
        let Some(entity) = self.entity(styled)? else {
            return Ok(None);
        };
        if entity.ifc_type != IfcType::IfcStyledItem {
            return Ok(None);
        }
        // Styles (1): IfcPresentationStyleAssignments (IFC2X3) or presentation styles.
        let styles = entity
            .get(1)
            .and_then(AttributeValue::as_ref_members)
            .map(|m| m.iter().filter_map(AttributeValue::as_entity_ref).collect())
            .unwrap_or_else(Vec::new);
        for style in styles {
            if let Some(colour) = self.style_colour(style, 0)? {
                return Ok(Some(colour));
            }
        }
        Ok(None)
    }

    fn style_colour(&mut self, style: u32, depth: usize) -> Result<Option<Colour>, ImportError> {
        if let Some(known) = self.style_colours.get(&style) {
            return Ok(known.clone());
        }
        if depth > MAX_NESTING {
            return Ok(None);
        }
        let Some(entity) = self.entity(style)? else {
            return Ok(None);
        };
        let mut colour = None;
        match entity.ifc_type {
            // Styles (0).
            IfcType::IfcPresentationStyleAssignment => {
                for inner in entity.get_refs(0).unwrap_or_default() {
                    colour = self.style_colour(inner, depth + 1)?;
                    if colour.is_some() {
                        break;
                    }
                }
            }
            // Name (0), Side (1), Styles (2).
            IfcType::IfcSurfaceStyle => {
                let name = entity
                    .get_string(0)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned);
                for element in entity.get_refs(2).unwrap_or_default() {
                    if let Some((rgb, opacity)) = self.shading(element)? {
                        let name = name.clone().unwrap_or_else(|| {
                            let [r, g, b] = rgb.map(|c| (c.clamp(0.0, 1.0) * 255.0).round());
                            format!("Colour {r:.0} {g:.0} {b:.0}")
                        });
                        colour = Some(Colour { name, rgb, opacity });
                        break;
                    }
                }
            }
            _ => {}
        }
        self.style_colours.insert(style, colour.clone());
        Ok(colour)
    }

    /// An `IfcSurfaceStyleShading` or `IfcSurfaceStyleRendering`: SurfaceColour (0) and
    /// Transparency (1) as RGB and opacity.
    fn shading(&mut self, id: u32) -> Result<Option<([f64; 3], f64)>, ImportError> {
        let Some(entity) = self.entity(id)? else {
            return Ok(None);
        };
        if !entity
            .ifc_type
            .is_subtype_of(IfcType::IfcSurfaceStyleShading)
        {
            return Ok(None);
        }
        let Some(colour) = entity.get_ref(0) else {
            return Ok(None);
        };
        let Some(rgb) = self.entity(colour)? else {
            return Ok(None);
        };
        if rgb.ifc_type != IfcType::IfcColourRgb {
            return Ok(None);
        }
        // Name (0), Red (1), Green (2), Blue (3).
        // Missing: light grey (as for OBJ); no transparency: opaque.
        let channel = |i: usize| rgb.get_float(i).unwrap_or(0.8).clamp(0.0, 1.0);
        let transparency = entity.get_float(1).unwrap_or(0.0).clamp(0.0, 1.0);
        Ok(Some((
            [channel(1), channel(2), channel(3)],
            1.0 - transparency,
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// One storey holding a wall (with a type), a slab and a door, each an extruded
    /// rectangle; millimetres. The wall is red (a styled item on its solid), the door half
    /// transparent blue (an `IfcSurfaceStyleShading`), the slab grey through its material's
    /// styled representation.
    /// A small IFC4 house written for these tests (`tests/samples/ifc/house.ifc`): a wall with
    /// a type, a slab and a door in one storey, in millimetres.
    const HOUSE: &str = include_str!("../../../tests/samples/ifc/house.ifc");

    fn import(text: &str) -> Result<Imported, ImportError> {
        Ifc.import("model.ifc", text.as_bytes(), &HashMap::new())
    }

    fn find<'e>(element: &'e Element, class: &str) -> Vec<&'e Element> {
        let mut found = Vec::new();
        if element.class.as_deref() == Some(class) {
            found.push(element);
        }
        for child in &element.children {
            found.extend(find(child, class));
        }
        found
    }

    /// x, y, z extent of a mesh.
    fn extent(mesh: &Mesh) -> [f64; 3] {
        let mut min = [f64::MAX; 3];
        let mut max = [f64::MIN; 3];
        for v in mesh.vertices.chunks_exact(3) {
            for a in 0..3 {
                min[a] = min[a].min(v[a]);
                max[a] = max[a].max(v[a]);
            }
        }
        [0, 1, 2].map(|a| ((max[a] - min[a]) * 1e6).round() / 1e6)
    }

    #[test]
    fn the_spatial_tree_with_classes_ids_properties_and_metre_geometry() {
        let imported = import(HOUSE).unwrap();
        assert_eq!(imported.units, "m");
        assert_eq!(imported.elements.len(), 1, "one root: the project");
        let project = &imported.elements[0];
        assert_eq!(project.class.as_deref(), Some("IfcProject"));
        assert_eq!(project.name, "Test Project");
        assert_eq!(
            project.application_id.as_deref(),
            Some("0YvctVUKr0kugbFTf53O9L")
        );
        let site = &project.children[0];
        let building = &site.children[0];
        let storey = &building.children[0];
        let classes = |e: &Element| -> Vec<String> {
            e.children.iter().filter_map(|c| c.class.clone()).collect()
        };
        assert_eq!(classes(project), ["IfcSite"]);
        assert_eq!(classes(site), ["IfcBuilding"]);
        assert_eq!(classes(building), ["IfcBuildingStorey"]);
        assert_eq!(classes(storey), ["IfcWall", "IfcSlab", "IfcDoor"]);
        assert_eq!(storey.name, "Ground floor");
        assert_eq!(storey.properties["LongName"], "EG");
        assert_eq!(storey.properties["Elevation"], 3.0, "metres");
        assert!(project.meshes.is_empty() && storey.meshes.is_empty());

        let wall = &storey.children[0];
        assert_eq!(wall.name, "Wall 1");
        assert_eq!(
            wall.application_id.as_deref(),
            Some("1kTvXnbbzCWw8lcMd1dR4o")
        );
        assert_eq!(wall.properties["IFC Class"], "IfcWall");
        assert_eq!(wall.properties["GlobalId"], "1kTvXnbbzCWw8lcMd1dR4o");
        assert_eq!(wall.properties["Tag"], "W-1");
        assert_eq!(wall.properties["Type"], "Plastered wall 200");
        let pset = &wall.properties["Pset_WallCommon"];
        assert_eq!(
            pset["IsExternal"], true,
            "the occurrence overrides its type"
        );
        assert_eq!(pset["LoadBearing"], false, "from the type");
        assert_eq!(pset["FireRating"], "REI 90");
        assert_eq!(pset["ThermalTransmittance"], 0.24);
        assert_eq!(pset["Width"], 0.2, "a length in metres");
        let qto = &wall.properties["Qto_WallBaseQuantities"];
        assert_eq!(qto["Length"], 5.0);
        assert_eq!(qto["NetSideArea"], 15.0);
        assert_eq!(qto["NetVolume"], 3.0);

        let slab = &storey.children[1];
        assert_eq!(slab.properties["Material"], "Concrete");
        let door = &storey.children[2];
        assert_eq!(
            door.application_id.as_deref(),
            Some("0DTRkEz0r6gvzG6VdDr24n")
        );

        for (element, size) in [
            (wall, [5.0, 0.2, 3.0]),
            (slab, [5.0, 4.0, 0.2]),
            (door, [0.9, 0.05, 2.1]),
        ] {
            assert_eq!(element.meshes.len(), 1, "{}", element.name);
            let mesh = &element.meshes[0];
            assert_eq!(
                mesh.face_count(),
                12,
                "{}: a box is 12 triangles",
                element.name
            );
            assert!(mesh.faces.chunks(4).all(|f| f[0] == 3));
            assert_eq!(extent(mesh), size, "{} in metres", element.name);
        }
        let (name, colour, opacity) = wall.meshes[0].material.clone().unwrap();
        assert_eq!(
            (name.as_str(), colour, opacity),
            ("Red plaster", 0xFFFF_0000, 1.0)
        );
        let (name, colour, opacity) = slab.meshes[0].material.clone().unwrap();
        assert_eq!(
            (name.as_str(), colour, opacity),
            ("Concrete grey", 0xFF80_8080, 1.0)
        );
        let (_, colour, opacity) = door.meshes[0].material.clone().unwrap();
        assert_eq!((colour, opacity), (0x8000_00FF, 0.5));
        // The door stands where its placement puts it: 1 m along x.
        let min_x = door.meshes[0]
            .vertices
            .chunks_exact(3)
            .map(|v| v[0])
            .fold(f64::MAX, f64::min);
        assert!((min_x - 1.0).abs() < 1e-6, "{min_x}");
    }

    /// The house as IFC2X3 writes it: shorter records, styles through
    /// `IfcPresentationStyleAssignment`, no transparency on shading.
    fn house_ifc2x3() -> String {
        [
            ("FILE_SCHEMA(('IFC4'))", "FILE_SCHEMA(('IFC2X3'))"),
            ("'W-1',.STANDARD.);", "'W-1');"),
            ("#110=IFCSTYLEDITEM(#104,(#111),$);", "#110=IFCSTYLEDITEM(#104,(#114),$);\n#114=IFCPRESENTATIONSTYLEASSIGNMENT((#111));"),
            ("#214=IFCSTYLEDITEM($,(#215),$);", "#214=IFCSTYLEDITEM($,(#218),$);\n#218=IFCPRESENTATIONSTYLEASSIGNMENT((#215));"),
            ("#310=IFCSTYLEDITEM(#305,(#311),'Door leaf');", "#310=IFCSTYLEDITEM(#305,(#314),'Door leaf');\n#314=IFCPRESENTATIONSTYLEASSIGNMENT((#311));"),
            ("IFCSURFACESTYLESHADING(#217,0.)", "IFCSURFACESTYLESHADING(#217)"),
            ("IFCSURFACESTYLESHADING(#313,0.5)", "IFCSURFACESTYLERENDERING(#313,0.5,$,$,$,$,$,$,.NOTDEFINED.)"),
            ("IFCMATERIAL('Concrete',$,$)", "IFCMATERIAL('Concrete')"),
            ("5000.,$);", "5000.);"),
            ("15.,$);", "15.);"),
            ("3.,$);", "3.);"),
            ("2100.,900.,.DOOR.,.SINGLE_SWING_LEFT.,$);", "2100.,900.);"),
        ]
        .iter()
        .fold(HOUSE.to_owned(), |text, (from, to)| {
            assert!(text.contains(from), "{from}");
            text.replace(from, to)
        })
    }

    #[test]
    fn ifc2x3_and_ifc4x3_read_like_ifc4() {
        let ifc4 = import(HOUSE).unwrap();
        let ifc4x3 = HOUSE.replace("FILE_SCHEMA(('IFC4'))", "FILE_SCHEMA(('IFC4X3_ADD2'))");
        for text in [house_ifc2x3(), ifc4x3] {
            let other = import(&text).unwrap();
            let (a, b) = (&ifc4.elements[0], &other.elements[0]);
            let (a, b): (Vec<&Element>, Vec<&Element>) = (all(a), all(b));
            assert_eq!(a.len(), b.len());
            for (a, b) in a.iter().zip(&b) {
                assert_eq!(
                    (&a.name, &a.class, &a.application_id),
                    (&b.name, &b.class, &b.application_id)
                );
                assert_eq!(a.properties, b.properties, "{}", a.name);
                assert_eq!(a.meshes.len(), b.meshes.len(), "{}", a.name);
                for (a, b) in a.meshes.iter().zip(&b.meshes) {
                    assert_eq!(a.face_count(), b.face_count());
                    assert_eq!(a.material, b.material);
                }
            }
        }
    }

    #[test]
    fn metres_stay_metres() {
        let metres = HOUSE
            .replace(".MILLI.,.METRE.", "$,.METRE.")
            .replace("5000.,200.", "5.,0.2")
            .replace("(2500.,100.)", "(2.5,0.1)")
            .replace(",3000.);\n#105", ",3.);\n#105");
        let imported = import(&metres).unwrap();
        let storey = &imported.elements[0].children[0].children[0].children[0];
        assert_eq!(extent(&storey.children[0].meshes[0]), [5.0, 0.2, 3.0]);
        assert_eq!(
            storey.properties["Elevation"], 3000.0,
            "this file says metres"
        );
    }

    #[test]
    fn an_opening_cuts_its_wall_and_is_not_an_element() {
        let with_opening = HOUSE.replace(
            "ENDSEC;\nEND-ISO",
            "#400=IFCOPENINGELEMENT('3DTRkEz0r6gvzG6VdDr24n',$,'Opening',$,$,#401,#402,$,.OPENING.);
#401=IFCLOCALPLACEMENT(#101,#403);
#402=IFCPRODUCTDEFINITIONSHAPE($,$,(#404));
#403=IFCAXIS2PLACEMENT3D(#408,$,$);
#404=IFCSHAPEREPRESENTATION(#23,'Body','SweptSolid',(#405));
#405=IFCEXTRUDEDAREASOLID(#406,#107,#24,2100.);
#406=IFCRECTANGLEPROFILEDEF(.AREA.,$,#407,900.,400.);
#407=IFCAXIS2PLACEMENT2D(#409,$);
#408=IFCCARTESIANPOINT((1000.,0.,0.));
#409=IFCCARTESIANPOINT((450.,100.));
#410=IFCRELVOIDSELEMENT('4DTRkEz0r6gvzG6VdDr24n',$,$,$,#100,#400);
#411=IFCRELFILLSELEMENT('5DTRkEz0r6gvzG6VdDr24n',$,$,$,#400,#300);
ENDSEC;\nEND-ISO",
        );
        let imported = import(&with_opening).unwrap();
        let storey = &imported.elements[0].children[0].children[0].children[0];
        assert_eq!(storey.children.len(), 3);
        assert!(find(&imported.elements[0], "IfcOpeningElement").is_empty());
        let wall = &storey.children[0];
        assert!(
            wall.meshes[0].face_count() > 12,
            "a door-shaped hole: {}",
            wall.meshes[0].face_count()
        );
        assert_eq!(extent(&wall.meshes[0]), [5.0, 0.2, 3.0]);
    }

    #[test]
    fn parts_stay_under_their_whole_and_strays_are_kept() {
        let text = HOUSE
            .replace("(#100,#200,#300),#34)", "(#100,#200,#300,#500),#34)")
            .replace(
                "ENDSEC;\nEND-ISO",
                "#500=IFCELEMENTASSEMBLY('0EA0000000000000000001',$,'Door set',$,$,#35,$,$,.NOTDEFINED.,.NOTDEFINED.);
#501=IFCRELAGGREGATES('0EA0000000000000000002',$,$,$,#500,(#300));
#600=IFCSLAB('0EA0000000000000000003',$,'Stray slab',$,$,#201,#202,$,.FLOOR.);
#601=IFCBUILDINGELEMENTPROXY('0EA0000000000000000004',$,'Empty stray',$,$,$,$,$,$);
ENDSEC;\nEND-ISO",
            );
        let imported = import(&text).unwrap();
        let storey = &imported.elements[0].children[0].children[0].children[0];
        let names: Vec<&str> = storey.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Wall 1", "Floor slab", "Door set"]);
        assert_eq!(storey.children[2].children[0].name, "Door 1");
        let roots: Vec<&str> = imported.elements.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            roots,
            ["Test Project", "Stray slab"],
            "strays with nothing to show are dropped"
        );
        assert_eq!(imported.elements[1].meshes[0].face_count(), 12);
    }

    #[test]
    fn other_files_are_refused_with_a_reason() {
        let reason = |text: &str| import(text).unwrap_err().to_string();
        let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let e = Ifc.import("j.ifc", &junk, &HashMap::new()).unwrap_err();
        assert!(matches!(e, ImportError::Malformed(_)));
        assert!(e.to_string().contains("not an IFC file"), "{e}");

        let e = reason(&HOUSE.replace("FILE_SCHEMA(('IFC4'))", "FILE_SCHEMA(('IFC5X9'))"));
        assert!(e.starts_with("IFC schema IFC5X9 is not supported"), "{e}");
        let e = reason(&HOUSE.replace("FILE_SCHEMA(('IFC4'));\n", ""));
        assert!(e.contains("FILE_SCHEMA"), "{e}");

        // Cut off in the middle of the wall's record (line 30).
        let cut = HOUSE.find("#100=IFCWALL").unwrap() + 30;
        let e = reason(&HOUSE[..cut]);
        assert!(e.contains("incomplete") && e.contains("line 30"), "{e}");
        // Cut off after a whole record.
        let cut = HOUSE.find("#200=").unwrap();
        let e = reason(&HOUSE[..cut]);
        assert!(e.contains("incomplete"), "{e}");
        // A damaged record in a complete file.
        let e = reason(&HOUSE.replace(
            "#122=IFCPROPERTYSINGLEVALUE('FireRating'",
            "#122=IFCPROPERTYSINGLEVALUE('FireRating",
        ));
        assert!(e.contains("line"), "{e}");
        // A record that is whole but whose values do not parse.
        let e = reason(&HOUSE.replace("IFCLABEL('REI 90'),$)", "IFCLABEL('REI 90'),$ $)"));
        assert!(e.contains("#122 on line 45"), "{e}");
        let e = reason(&HOUSE.replace("#1=IFCPROJECT(", "#1=IFCPROJECTLIBRARY("));
        assert!(e.contains("IfcProject"), "{e}");
    }

    /// Every element of the tree, depth first.
    fn all(element: &Element) -> Vec<&Element> {
        let mut out = vec![element];
        for child in &element.children {
            out.extend(all(child));
        }
        out
    }

    /// A public sample model imported, when this machine has it: the samples are not in the
    /// repository, so without them these tests pass without checking anything.
    fn sample(name: &str) -> Option<Imported> {
        let path = std::path::Path::new("/work/shared/samples/ifc").join(name);
        let bytes = std::fs::read(path).ok()?;
        let started = std::time::Instant::now();
        let imported = Ifc.import(name, &bytes, &HashMap::new()).unwrap();
        eprintln!("{name}: imported in {:?}", started.elapsed());
        Some(imported)
    }

    /// The elements of `class` or its subclasses.
    fn of_class(imported: &Imported, class: IfcType) -> Vec<&Element> {
        imported
            .elements
            .iter()
            .flat_map(all)
            .filter(|e| {
                IfcType::from_str(e.class.as_deref().unwrap_or("")).is_subtype_of(class.clone())
            })
            .collect()
    }

    fn named<'e>(imported: &'e Imported, name: &str) -> &'e Element {
        imported
            .elements
            .iter()
            .flat_map(all)
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no element {name}"))
    }

    /// Asserts that the horizontal size of everything drawn but the site is within `x` by `y`
    /// metres.
    fn assert_footprint(imported: &Imported, x: std::ops::Range<f64>, y: std::ops::Range<f64>) {
        let mut min = [f64::MAX; 2];
        let mut max = [f64::MIN; 2];
        for element in of_class(imported, IfcType::IfcElement) {
            for v in element
                .meshes
                .iter()
                .flat_map(|m| m.vertices.chunks_exact(3))
            {
                for a in 0..2 {
                    min[a] = min[a].min(v[a]);
                    max[a] = max[a].max(v[a]);
                }
            }
        }
        let [w, d] = [max[0] - min[0], max[1] - min[1]];
        assert!(x.contains(&w) && y.contains(&d), "{w} x {d} m");
    }

    /// Whether every mesh of `elements` has a material.
    fn coloured(elements: &[&Element]) -> bool {
        elements
            .iter()
            .flat_map(|e| &e.meshes)
            .all(|m| m.material.is_some())
    }

    fn drawn(elements: &[&Element]) -> usize {
        elements.iter().filter(|e| !e.meshes.is_empty()).count()
    }

    #[test]
    fn fzk_haus_ifc4() {
        let Some(imported) = sample("AC20-FZK-Haus.ifc") else {
            return;
        };
        assert_eq!(imported.elements.len(), 1, "one tree, nothing outside it");
        let project = &imported.elements[0];
        assert_eq!(project.name, "Projekt-FZK-Haus");
        let building = &project.children[0].children[0];
        assert_eq!(building.class.as_deref(), Some("IfcBuilding"));
        let storeys: Vec<&str> = building.children.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(storeys, ["Erdgeschoss", "Dachgeschoss"]);

        // The 82 building elements, all drawn and coloured; with the site's terrain that is
        // the 83 products web-ifc draws.
        let elements = of_class(&imported, IfcType::IfcElement);
        assert_eq!(elements.len(), 82);
        assert_eq!(drawn(&elements), 82);
        let all_drawn: Vec<&Element> = imported.elements.iter().flat_map(all).collect();
        assert_eq!(drawn(&all_drawn), 83);
        assert!(coloured(&elements));
        let spaces = of_class(&imported, IfcType::IfcSpace);
        assert_eq!(
            (spaces.len(), drawn(&spaces)),
            (7, 0),
            "rooms are data, not drawn"
        );
        assert!(spaces[0].properties["BaseQuantities"]["NetFloorArea"].is_f64());

        let wall = named(&imported, "Wand-Ext-ERDG-1");
        assert_eq!(wall.class.as_deref(), Some("IfcWallStandardCase"));
        assert_eq!(
            wall.application_id.as_deref(),
            Some("3rPX_Juz59peXXY6wDJl18")
        );
        assert_eq!(wall.properties["BaseQuantities"]["Width"], 0.3);
        assert_eq!(wall.properties["Material"], "Leichtbeton 102890359");
        assert!(
            wall.meshes[0].face_count() > 12,
            "its windows and door are cut out"
        );
        let window = named(&imported, "EG-Fenster-1");
        let glass = window
            .meshes
            .iter()
            .filter_map(|m| m.material.clone())
            .find(|m| m.0 == "Glas");
        assert!(glass.is_some_and(|(_, _, opacity)| opacity < 0.2));

        assert_footprint(&imported, 10.0..20.0, 8.0..20.0);
    }

    #[test]
    fn duplex_ifc2x3() {
        let Some(imported) = sample("duplex.ifc") else {
            return;
        };
        assert_eq!(imported.elements.len(), 1);
        let building = &imported.elements[0].children[0].children[0];
        assert_eq!(building.children.len(), 4, "four levels");
        // 215 drawn, as web-ifc; the stairs and the roof are drawn by their parts.
        let elements = of_class(&imported, IfcType::IfcElement);
        assert_eq!((elements.len(), drawn(&elements)), (218, 215));
        let stair = of_class(&imported, IfcType::IfcStair)[0];
        assert_eq!(stair.children[0].class.as_deref(), Some("IfcStairFlight"));
        assert_eq!(of_class(&imported, IfcType::IfcSpace).len(), 21);

        let wall = named(
            &imported,
            "Basic Wall:Party Wall - CMU Residential Unit Dimising Wall:139234",
        );
        assert_eq!(wall.properties["Pset_WallCommon"]["IsExternal"], true);
        let layers = wall.properties["Material"].as_array().unwrap();
        assert!(layers.contains(&json!("Masonry - Concrete Block")));
        let width = wall.properties["PSet_Revit_Type_Construction"]["Width"]
            .as_f64()
            .unwrap();
        assert!(
            (width - 0.55).abs() < 1e-9,
            "millimetres as metres: {width}"
        );
        assert!(
            wall.meshes[0].material.is_some(),
            "IFC2X3 style assignments"
        );

        assert_footprint(&imported, 5.0..40.0, 5.0..40.0);
    }

    #[test]
    fn ifc_open_house_ifc4() {
        let Some(imported) = sample("IfcOpenHouse_IFC4.ifc") else {
            return;
        };
        assert_eq!(imported.elements.len(), 1);
        let elements = of_class(&imported, IfcType::IfcElement);
        // The roof and the five windows are drawn by their parts (slabs; members and a plate).
        assert_eq!((elements.len(), drawn(&elements)), (40, 34));
        assert!(coloured(&elements));
        let roof = of_class(&imported, IfcType::IfcRoof)[0];
        assert_eq!(roof.children.len(), 2);
        for window in of_class(&imported, IfcType::IfcWindow) {
            assert_eq!(drawn(&window.children.iter().collect::<Vec<_>>()), 5);
        }
    }
}
