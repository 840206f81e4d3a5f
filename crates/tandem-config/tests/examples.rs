//! The shipped examples must always be valid configs.

use std::path::Path;

#[test]
fn every_shipped_example_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(e) = tandem_config::load_file(&path) {
                panic!("{} does not validate:\n{e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no examples found in {}", dir.display());
}
