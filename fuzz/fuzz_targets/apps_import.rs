#![no_main]
//! App templates from other ecosystems (Cloudy, CasaOS, Portainer): any
//! bytes are imported without a panic, and every definition an import
//! returns plans (it was checked before being returned; the plan must not
//! panic either, with its defaults or with the import's placeholders).
use libfuzzer_sys::fuzz_target;
use nuvol_apps::compose;
use nuvol_apps::import;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    if let Ok(apps) = import::import(data, Some("fuzz")) {
        for a in apps {
            let _ = compose::plan(&a.id, &a.definition, &BTreeMap::new());
            let (meta, _) = compose::read_meta(&a.definition).expect("an import reads back");
            compose::plan(&a.id, &a.definition, &import::placeholders(&meta))
                .expect("an import plans with its required parameters filled");
        }
    }
});
