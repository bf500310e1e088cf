//! Edit/delete convergence (SPEC.md §11.4): every delivery order gives the
//! same state.

use microbot_protocol::content::Content;
use microbot_protocol::convergence::{
    EditVersion, MessageEvent, MessageState, MessageView, Original,
};
use proptest::prelude::*;

fn original(text: &str) -> MessageEvent {
    MessageEvent::Original(Original {
        sent_at_ms: 1000,
        text: text.into(),
    })
}

fn edit(revision: u64, edited_at_ms: u64, id: u8, text: &str) -> MessageEvent {
    MessageEvent::Edit(EditVersion {
        revision,
        edited_at_ms,
        edit_id: [id; 16],
        text: text.into(),
    })
}

fn fold(events: impl IntoIterator<Item = MessageEvent>) -> MessageState {
    let mut state = MessageState::new();
    for event in events {
        state.apply(event);
    }
    state
}

/// Calls `visit` with every permutation of `items` (Heap's algorithm).
fn permutations<T: Clone>(items: &mut [T], k: usize, visit: &mut impl FnMut(&[T])) {
    if k <= 1 {
        visit(items);
        return;
    }
    permutations(items, k - 1, visit);
    for i in 0..k - 1 {
        if k.is_multiple_of(2) {
            items.swap(i, k - 1);
        } else {
            items.swap(0, k - 1);
        }
        permutations(items, k - 1, visit);
    }
}

fn assert_all_orders_give(events: Vec<MessageEvent>, expected: &MessageState) {
    let mut events = events;
    let len = events.len();
    let mut count = 0;
    permutations(&mut events, len, &mut |order| {
        assert_eq!(&fold(order.iter().cloned()), expected, "order {order:?}");
        count += 1;
    });
    assert_eq!(count, (1..=len).product::<usize>());
}

#[test]
fn original_alone_is_visible_unedited() {
    let state = fold([original("hi")]);
    assert_eq!(
        state.view(),
        MessageView::Visible {
            text: "hi",
            sent_at_ms: 1000,
            edited: None
        }
    );
    assert_eq!(state.latest_revision(), 0);
}

#[test]
fn highest_revision_wins_in_every_order() {
    let events = vec![
        original("v0"),
        edit(1, 5000, 1, "v1"),
        edit(2, 3000, 2, "v2 (older clock, later revision)"),
        edit(1, 6000, 3, "v1' (concurrent)"),
    ];
    let expected = fold(events.clone());
    assert_eq!(
        expected.view(),
        MessageView::Visible {
            text: "v2 (older clock, later revision)",
            sent_at_ms: 1000,
            edited: Some((2, 3000))
        }
    );
    assert_eq!(expected.latest_revision(), 2);
    assert_all_orders_give(events, &expected);
}

#[test]
fn ties_break_on_time_then_edit_id() {
    let by_time = fold([
        original("v0"),
        edit(1, 10, 9, "early"),
        edit(1, 11, 1, "late"),
    ]);
    assert!(matches!(
        by_time.view(),
        MessageView::Visible { text: "late", .. }
    ));
    let by_id = fold([
        original("v0"),
        edit(1, 10, 9, "high id"),
        edit(1, 10, 1, "low id"),
    ]);
    assert!(matches!(
        by_id.view(),
        MessageView::Visible {
            text: "high id",
            ..
        }
    ));
}

#[test]
fn delete_wins_in_every_order() {
    let events = vec![
        original("v0"),
        edit(1, 1, 1, "v1"),
        MessageEvent::Delete,
        edit(2, 2, 2, "v2"),
    ];
    let expected = fold(events.clone());
    assert_eq!(
        expected.view(),
        MessageView::Deleted {
            original_seen: true
        }
    );
    assert_all_orders_give(events, &expected);
    // No text survives the delete.
    assert!(!format!("{expected:?}").contains("v1"));
}

#[test]
fn an_edit_before_its_original_waits_for_it() {
    let mut state = fold([edit(1, 1, 1, "edited")]);
    assert_eq!(state.view(), MessageView::Pending);
    state.apply(original("first"));
    assert!(matches!(
        state.view(),
        MessageView::Visible {
            text: "edited",
            edited: Some((1, 1)),
            ..
        }
    ));
}

#[test]
fn a_delete_before_its_original_is_final() {
    let mut state = fold([MessageEvent::Delete]);
    assert_eq!(
        state.view(),
        MessageView::Deleted {
            original_seen: false
        }
    );
    state.apply(original("too late"));
    assert_eq!(
        state.view(),
        MessageView::Deleted {
            original_seen: true
        }
    );
}

#[test]
fn events_come_from_content() {
    let text = Content::text([1; 16], 1000, "hello");
    let edit = Content::edit([2; 16], 2000, [1; 16], 1, "hello!");
    let delete = Content::delete([3; 16], 3000, [1; 16]);
    let reaction = Content::reaction([4; 16], 4000, [1; 16], "👍", false);
    let (id, event) = MessageEvent::from_content(&text).unwrap();
    assert_eq!(id, [1; 16]);
    assert_eq!(event, original("hello"));
    let (id, event) = MessageEvent::from_content(&edit).unwrap();
    assert_eq!(id, [1; 16]);
    assert_eq!(
        event,
        MessageEvent::Edit(EditVersion {
            revision: 1,
            edited_at_ms: 2000,
            edit_id: [2; 16],
            text: "hello!".into()
        })
    );
    assert_eq!(
        MessageEvent::from_content(&delete).unwrap(),
        ([1; 16], MessageEvent::Delete)
    );
    assert_eq!(MessageEvent::from_content(&reaction), None);
    let mut bad = Content::delete([3; 16], 3000, [1; 16]);
    bad.message_id = bytes::Bytes::new();
    // Only the target id matters to a delete; a bad target is refused.
    assert!(MessageEvent::from_content(&bad).is_some());
    let mut bad_target = edit.clone();
    if let Some(microbot_protocol::content::content::Body::Edit(e)) = &mut bad_target.body {
        e.target_message_id = bytes::Bytes::from_static(&[1; 3]);
    }
    assert_eq!(MessageEvent::from_content(&bad_target), None);
}

fn arb_event() -> impl Strategy<Value = MessageEvent> {
    prop_oneof![
        (0u64..3, "[a-c]{0,2}").prop_map(|(ts, text)| MessageEvent::Original(Original {
            sent_at_ms: ts,
            text
        })),
        (0u64..4, 0u64..3, 0u8..3, "[a-c]{0,2}").prop_map(|(revision, at, id, text)| {
            MessageEvent::Edit(EditVersion {
                revision,
                edited_at_ms: at,
                edit_id: [id; 16],
                text,
            })
        }),
        Just(MessageEvent::Delete),
    ]
}

proptest! {
    #[test]
    fn any_order_and_duplicates_give_the_same_state(
        events in proptest::collection::vec(arb_event(), 0..10),
        shuffle_seed in any::<u64>(),
        duplicate in any::<prop::sample::Index>(),
    ) {
        let reference = fold(events.clone());
        // A pseudo-random permutation with one event delivered twice.
        let mut shuffled = events.clone();
        let mut seed = shuffle_seed;
        for i in (1..shuffled.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = usize::try_from(seed >> 33).unwrap() % (i + 1);
            shuffled.swap(i, j);
        }
        if !events.is_empty() {
            shuffled.push(events[duplicate.index(events.len())].clone());
        }
        prop_assert_eq!(fold(shuffled), reference.clone());

        // Merging two halves, folded separately, gives the same state too.
        let (left, right) = events.split_at(events.len() / 2);
        let mut merged = fold(right.iter().cloned());
        merged.merge(fold(left.iter().cloned()));
        prop_assert_eq!(merged, reference);
    }

    #[test]
    fn every_permutation_of_small_sets_agrees(events in proptest::collection::vec(arb_event(), 0..6)) {
        let expected = fold(events.clone());
        let mut events = events;
        let len = events.len();
        let mut all_equal = true;
        permutations(&mut events, len, &mut |order| {
            all_equal &= fold(order.iter().cloned()) == expected;
        });
        prop_assert!(all_equal);
    }
}
