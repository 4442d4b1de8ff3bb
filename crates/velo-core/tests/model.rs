//! Property tests: random interleavings of every stream operation, checked
//! against the model in `velo_core::model` (see its docs for the invariants).

use proptest::prelude::*;
use velo_core::model::{run, Op};

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Send),
        1 => (1usize..6).prop_map(Op::SendBatch),
        1 => Just(Op::Handoff),
        3 => (1usize..8).prop_map(Op::TakeInput),
        1 => Just(Op::End),
        1 => Just(Op::ReleaseInput),
        3 => Just(Op::Yield),
        1 => (1usize..6).prop_map(Op::YieldBatch),
        1 => Just(Op::HandoffOutput),
        3 => (1usize..8).prop_map(Op::TakeOutput),
        1 => Just(Op::HandlerReturned),
        1 => Just(Op::HandlerFailed),
        1 => Just(Op::Cancel),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 8 } else { 2000 }, ..ProptestConfig::default() })]

    #[test]
    fn no_loss_no_duplicate_no_reorder_no_overflow(capacity in 1usize..6, ops in prop::collection::vec(op(), 1..120)) {
        run(capacity, ops);
    }
}
