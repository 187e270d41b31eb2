//! `irq_test`: see [`passthru::programs::irq_test`].
fn main() {
    passthru::programs::irq_test::main()
}
