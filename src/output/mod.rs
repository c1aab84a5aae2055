//! What the commands print: the JSON documents of `list --json` and `status --json`
//! ([`json`], schema in `docs/json.md` and vfio-bind(8)) and text layout helpers
//! ([`text`]). Pure: built from the snapshot and the plan, no reads.

pub mod json;
pub mod text;
