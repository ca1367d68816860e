//! Choosing a core's next background step, apart from doing it: a pure function of what
//! the core looks like now ([`View`]), so the policy is tested without a disk.
//!
//! Order of urgency: compact (space comes back, reads get shorter), then, on an idle
//! core, seal an active extent as dead as a victim (so its space comes back too: an
//! extent that is never filled would otherwise never be compacted), then move an
//! ancestor's records (its leaves read behind it until then), then split a leaf that
//! grew past the threshold (one that still reads behind an ancestor waits for it).

/// Deepest leaf that may still split (the substore id packs prefix bits above bit 56).
pub(super) const SPLIT_PREFIX_BITS_MAX: u8 = 52;

/// What the planner sees of one leaf.
#[derive(Clone, Debug, Default)]
pub(super) struct LeafView {
    /// Extents worth compacting, best first, without those whose compaction met
    /// corruption.
    pub(super) victims: Vec<u64>,
    pub(super) live_bytes: u64,
    pub(super) prefix_bits: u8,
    /// Still reads behind an ancestor whose records are not all moved.
    pub(super) behind_ancestor: bool,
    /// The core is idle and this leaf's active extent is at least as dead as a victim.
    pub(super) active_dead: bool,
}

/// What the planner sees of a core.
#[derive(Clone, Debug, Default)]
pub(super) struct View {
    /// The leaves, in the core's order; steps name them by position.
    pub(super) leaves: Vec<LeafView>,
    /// Handed-over ancestors whose records are not all moved yet.
    pub(super) ancestors: usize,
    pub(super) split_threshold_bytes: u64,
}

/// A background step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Compact extent `extent` of leaf number `leaf`.
    Compact { leaf: usize, extent: u64 },
    /// Seal the active extent of leaf number `leaf`, so that it can be compacted.
    SealActive { leaf: usize },
    /// Move the first ancestor's records into its children and retire it.
    Move,
    /// Split leaf number `leaf`.
    Split { leaf: usize },
}

/// The first leaf's best victim, if any leaf has one.
pub(super) fn victim(leaves: &[LeafView]) -> Option<Step> {
    let (leaf, extent) = (leaves.iter().enumerate())
        .find_map(|(leaf, view)| view.victims.first().map(|&extent| (leaf, extent)))?;
    Some(Step::Compact { leaf, extent })
}

/// The next step, or `None` when there is nothing to do.
pub(super) fn choose(view: &View) -> Option<Step> {
    if let Some(step) = victim(&view.leaves) {
        return Some(step);
    }
    if let Some(leaf) = view.leaves.iter().position(|l| l.active_dead) {
        return Some(Step::SealActive { leaf });
    }
    if view.ancestors > 0 {
        return Some(Step::Move);
    }
    let leaf = view.leaves.iter().position(|l| {
        l.live_bytes > view.split_threshold_bytes
            && l.prefix_bits <= SPLIT_PREFIX_BITS_MAX
            && !l.behind_ancestor
    })?;
    Some(Step::Split { leaf })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(victims: &[u64], live_bytes: u64) -> LeafView {
        LeafView {
            victims: victims.to_vec(),
            live_bytes,
            prefix_bits: 4,
            behind_ancestor: false,
            active_dead: false,
        }
    }

    fn view(leaves: Vec<LeafView>, ancestors: usize) -> View {
        View {
            leaves,
            ancestors,
            split_threshold_bytes: 1000,
        }
    }

    #[test]
    fn compaction_comes_first_then_seals_then_moves_then_splits() {
        let big = leaf(&[], 5000);
        let dirty = leaf(&[7, 3], 10);
        let dead_active = LeafView {
            active_dead: true,
            ..leaf(&[], 10)
        };
        assert_eq!(
            choose(&view(
                vec![big.clone(), dead_active.clone(), dirty.clone()],
                1
            )),
            Some(Step::Compact { leaf: 2, extent: 7 })
        );
        assert_eq!(
            choose(&view(vec![big.clone(), dead_active], 1)),
            Some(Step::SealActive { leaf: 1 })
        );
        assert_eq!(choose(&view(vec![big.clone()], 1)), Some(Step::Move));
        assert_eq!(
            choose(&view(vec![leaf(&[], 10), big], 0)),
            Some(Step::Split { leaf: 1 })
        );
        assert_eq!(choose(&view(vec![leaf(&[], 10)], 0)), None);
        assert_eq!(choose(&View::default()), None);
    }

    #[test]
    fn a_leaf_splits_only_past_the_threshold_not_too_deep_and_not_behind_an_ancestor() {
        let at_threshold = leaf(&[], 1000);
        assert_eq!(choose(&view(vec![at_threshold], 0)), None);
        let deepest = LeafView {
            prefix_bits: SPLIT_PREFIX_BITS_MAX + 4,
            ..leaf(&[], 5000)
        };
        assert_eq!(choose(&view(vec![deepest], 0)), None);
        let behind = LeafView {
            behind_ancestor: true,
            ..leaf(&[], 5000)
        };
        assert_eq!(choose(&view(vec![behind.clone()], 0)), None);
        let ok = leaf(&[], 5000);
        assert_eq!(
            choose(&view(vec![behind, ok], 0)),
            Some(Step::Split { leaf: 1 })
        );
    }
}
