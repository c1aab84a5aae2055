//! What the commands print: the JSON documents of `list --json` and `status --json`
//! ([`json`], schema in `docs/json.md` and vfio-bind(8)). Pure: built from the snapshot
//! and the plan, no reads. Text layout helpers are in [`crate::text`].

pub mod emit;
pub mod json;
