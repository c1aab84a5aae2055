//! The node check: a pure pass that marks the groups whose `/dev/vfio/<group>` does not
//! have the configured owner, group or mode, so that `check` and `apply --dry-run` show
//! that `apply` will change it (it sets the node even when every member is in place).

use crate::host::nodes::Nodes;
use crate::owner::Owners;
use crate::plan::model::Plan;

/// Mark `node_pending` on every group with ownership configured whose node (in `nodes`)
/// differs, or is absent while the group ends on a vfio driver (apply waits for it and
/// sets it).
pub fn check(plan: &mut Plan, owners: &Owners, nodes: &Nodes) {
    for g in &mut plan.groups {
        let Some(want) = owners.get(&g.group).filter(|o| !o.is_empty()) else {
            continue;
        };
        if !g.has_vfio_node() {
            continue;
        }
        g.node_pending = match nodes.get(&g.group).copied().flatten() {
            Some(n) => !want.matches(n.uid, n.gid, n.mode),
            None => true,
        };
    }
}
