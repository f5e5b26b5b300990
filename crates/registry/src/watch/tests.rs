use super::*;

#[tokio::test]
async fn only_the_touched_topic_wakes() {
    let w = Watchers::default();
    let a = w.subscribe(Topic::Service("a".into()));
    let mut b = w.subscribe(Topic::Service("b".into()));
    w.notify([Topic::Service("b".into())], 7);
    assert!(b.has_changed().unwrap());
    assert!(!a.has_changed().unwrap());
    assert_eq!(*b.borrow_and_update(), 7);
    drop((a, b));
    w.notify([Topic::Service("a".into()), Topic::Service("b".into())], 8);
    assert_eq!(w.len(), 0, "topics without receivers are dropped");
}
