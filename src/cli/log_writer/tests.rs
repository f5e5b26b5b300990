use super::*;

/// A shared in-memory stderr.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn lines_reach_the_output_in_order_and_the_guard_writes_the_rest() {
    let captured = Captured::default();
    let (writer, guard) = BatchedStderr::to(Box::new(captured.clone())).unwrap();
    for i in 0..100 {
        writeln!(writer.make_writer(), "line {i}").unwrap();
    }
    drop(guard);
    let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        String::from_utf8(lock(&captured.0).clone()).unwrap(),
        expected
    );
}

#[test]
fn the_writer_thread_writes_without_being_asked() {
    let captured = Captured::default();
    let (writer, _guard) = BatchedStderr::to(Box::new(captured.clone())).unwrap();
    writeln!(writer.make_writer(), "hello").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lock(&captured.0).is_empty() {
        assert!(std::time::Instant::now() < deadline, "never written");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(lock(&captured.0).as_slice(), b"hello\n");
}

#[test]
fn a_full_buffer_is_written_by_the_logger_itself() {
    let captured = Captured::default();
    let (writer, _guard) = BatchedStderr::to(Box::new(captured.clone())).unwrap();
    writer
        .make_writer()
        .write_all(&vec![b'.'; WRITE_INLINE_AT])
        .unwrap();
    assert!(lock(&captured.0).len() >= WRITE_INLINE_AT);
}
