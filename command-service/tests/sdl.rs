//! The committed SDL is the API's contract: a change to the schema must show up as a diff of
//! `schema/schema.graphql`. Regenerate with `STRATA_WRITE_SDL=1 cargo test -p command-service --test sdl`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn the_committed_sdl_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/schema.graphql");
    let sdl = command_service::graphql::sdl();
    if std::env::var_os("STRATA_WRITE_SDL").is_some() {
        std::fs::write(path, &sdl).unwrap();
    }
    let committed = std::fs::read_to_string(path).expect("schema/schema.graphql");
    assert!(
        committed == sdl,
        "schema/schema.graphql is out of date: run STRATA_WRITE_SDL=1 cargo test -p command-service --test sdl"
    );
}
