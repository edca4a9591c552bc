//! Every GraphQL document the pinned specklepy (tests/python/requirements.txt) can send is
//! valid against strata's schema, checked with async-graphql's own validation.
//!
//! The documents are read out of the installed package (`STRATA_TEST_SPECKLEPY_DIR`, exported by
//! `deploy/dev test`): specklepy writes each as a `gql("""…""")` literal. Bump specklepy only
//! with this test green.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Documents another issue will make valid, by file, line of the `gql(` call and operation.
/// Nothing else may be invalid.
const PENDING: &[(&str, u32, &str, &str)] = &[];

/// How many documents specklepy 2026.9.1 carries.
const EXPECTED_DOCUMENTS: usize = 66;

struct Document {
    file: String,
    line: u32,
    operation: String,
    text: String,
}

fn python_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            python_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "py") {
            out.push(path);
        }
    }
}

/// The `gql(` + whitespace + `"""…"""` literals of one file (specklepy's only form: no
/// prefixes, escapes or formatting).
fn documents_in(root: &Path, path: &Path) -> Vec<Document> {
    let source = std::fs::read_to_string(path).unwrap();
    let file = path
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut out = Vec::new();
    let mut rest = source.as_str();
    let mut offset = 0;
    while let Some(at) = rest.find("gql(") {
        let after_call = &rest[at + 4..];
        let body_start = after_call.len() - after_call.trim_start().len();
        let consumed = at + 4 + body_start;
        let candidate = &rest[consumed..];
        if let Some(body) = candidate.strip_prefix("\"\"\"") {
            let end = body.find("\"\"\"").expect("an unterminated document");
            let text = body[..end].to_owned();
            let line = source[..offset + at].matches('\n').count() as u32 + 1;
            out.push(Document {
                file: file.clone(),
                line,
                operation: operation_name(&text),
                text,
            });
            let advance = consumed + 3 + end + 3;
            offset += advance;
            rest = &rest[advance..];
        } else {
            offset += consumed;
            rest = &rest[consumed..];
        }
    }
    out
}

fn operation_name(document: &str) -> String {
    let mut words = document
        .split(|c: char| c.is_whitespace() || c == '(' || c == '{')
        .filter(|w| !w.is_empty());
    match words.next() {
        Some("query" | "mutation" | "subscription") => words.next().unwrap_or("").to_owned(),
        _ => String::new(),
    }
}

fn specklepy_documents() -> Vec<Document> {
    let dir = std::env::var("STRATA_TEST_SPECKLEPY_DIR").expect(
        "STRATA_TEST_SPECKLEPY_DIR is not set: run the tests through `deploy/dev test`, which \
         installs the pinned specklepy and points this at its package directory",
    );
    let root = PathBuf::from(dir);
    let mut files = Vec::new();
    python_files(&root, &mut files);
    files.iter().flat_map(|f| documents_in(&root, f)).collect()
}

#[tokio::test]
async fn every_specklepy_document_is_valid_except_the_listed_pending_ones() {
    let documents = specklepy_documents();
    assert_eq!(
        documents.len(),
        EXPECTED_DOCUMENTS,
        "specklepy's document count changed: was the pin moved?"
    );
    let mut unexpected = Vec::new();
    let mut now_valid = Vec::new();
    let mut pending_seen = 0;
    for doc in &documents {
        let pending = PENDING
            .iter()
            .find(|(file, line, _, _)| doc.file == *file && doc.line == *line);
        if let Some((_, _, operation, _)) = pending {
            assert_eq!(&doc.operation, operation, "{}:{}", doc.file, doc.line);
            pending_seen += 1;
        }
        match (strata::validate(&doc.text).await, pending) {
            (Ok(()), None) => {}
            (Ok(()), Some((_, _, _, issue))) => now_valid.push(format!(
                "{}:{} {} (listed as pending on {issue})",
                doc.file, doc.line, doc.operation
            )),
            (Err(_), Some(_)) => {}
            (Err(messages), None) => unexpected.push(format!(
                "{}:{} {}: {}",
                doc.file,
                doc.line,
                doc.operation,
                messages.join("; ")
            )),
        }
    }
    assert_eq!(
        pending_seen,
        PENDING.len(),
        "a pending entry matches nothing"
    );
    assert!(
        unexpected.is_empty(),
        "{} specklepy documents are invalid:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        now_valid.is_empty(),
        "these documents are valid now: drop them from PENDING:\n{}",
        now_valid.join("\n")
    );
}

/// The scanner and the validator themselves: a broken document is caught, a good one passes.
#[tokio::test]
async fn the_check_tells_valid_from_invalid() {
    let root = std::env::temp_dir().join(format!("strata-docs-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("sample.py");
    std::fs::write(
        &file,
        "from gql import gql\nq = gql(query)\nrequest = gql(\n    \"\"\"\n    query Good { serverInfo { name } }\n    \"\"\"\n)\nrequest = gql(\n    \"\"\"\n    query Bad($id: ID!) { project(id: $id) { nope } }\n    \"\"\"  # noqa: E501\n)\n",
    )
    .unwrap();
    let docs = documents_in(&root, &file);
    assert_eq!(docs.len(), 2);
    assert_eq!((docs[0].line, docs[0].operation.as_str()), (3, "Good"));
    assert_eq!((docs[1].line, docs[1].operation.as_str()), (8, "Bad"));
    assert_eq!(strata::validate(&docs[0].text).await, Ok(()));
    let errors = strata::validate(&docs[1].text).await.unwrap_err();
    assert!(errors.iter().any(|m| m.contains("nope")), "{errors:?}");
}

mod strata {
    pub async fn validate(document: &str) -> Result<(), Vec<String>> {
        command_service::graphql::validate_document(document).await
    }
}
