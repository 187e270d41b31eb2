//! What the driver-suite integration tests share: the 63 upstream-named cases (three models ×
//! immediate, threaded and interrupt-waited variants × the seven `vfio_pci_driver_test` cases).

/// One `#[test]` per case, each calling `$run("fixture.case")`.
macro_rules! driver_cases {
    ($run:ident) => {
        $crate::common::driver_cases! { @each $run;
            dsa_init_remove => "dsa.init_remove",
            dsa_memcpy_success => "dsa.memcpy_success",
            dsa_memcpy_from_unmapped_iova => "dsa.memcpy_from_unmapped_iova",
            dsa_memcpy_to_unmapped_iova => "dsa.memcpy_to_unmapped_iova",
            dsa_send_msi => "dsa.send_msi",
            dsa_mix_and_match => "dsa.mix_and_match",
            dsa_memcpy_storm => "dsa.memcpy_storm",
            dsa_threaded_init_remove => "dsa.threaded.init_remove",
            dsa_threaded_memcpy_success => "dsa.threaded.memcpy_success",
            dsa_threaded_memcpy_from_unmapped_iova => "dsa.threaded.memcpy_from_unmapped_iova",
            dsa_threaded_memcpy_to_unmapped_iova => "dsa.threaded.memcpy_to_unmapped_iova",
            dsa_threaded_send_msi => "dsa.threaded.send_msi",
            dsa_threaded_mix_and_match => "dsa.threaded.mix_and_match",
            dsa_threaded_memcpy_storm => "dsa.threaded.memcpy_storm",
            ioat_init_remove => "ioat.init_remove",
            ioat_memcpy_success => "ioat.memcpy_success",
            ioat_memcpy_from_unmapped_iova => "ioat.memcpy_from_unmapped_iova",
            ioat_memcpy_to_unmapped_iova => "ioat.memcpy_to_unmapped_iova",
            ioat_send_msi => "ioat.send_msi",
            ioat_mix_and_match => "ioat.mix_and_match",
            ioat_memcpy_storm => "ioat.memcpy_storm",
            ioat_threaded_init_remove => "ioat.threaded.init_remove",
            ioat_threaded_memcpy_success => "ioat.threaded.memcpy_success",
            ioat_threaded_memcpy_from_unmapped_iova => "ioat.threaded.memcpy_from_unmapped_iova",
            ioat_threaded_memcpy_to_unmapped_iova => "ioat.threaded.memcpy_to_unmapped_iova",
            ioat_threaded_send_msi => "ioat.threaded.send_msi",
            ioat_threaded_mix_and_match => "ioat.threaded.mix_and_match",
            ioat_threaded_memcpy_storm => "ioat.threaded.memcpy_storm",
            edu_init_remove => "edu.init_remove",
            edu_memcpy_success => "edu.memcpy_success",
            edu_memcpy_from_unmapped_iova => "edu.memcpy_from_unmapped_iova",
            edu_memcpy_to_unmapped_iova => "edu.memcpy_to_unmapped_iova",
            edu_send_msi => "edu.send_msi",
            edu_mix_and_match => "edu.mix_and_match",
            edu_memcpy_storm => "edu.memcpy_storm",
            edu_threaded_init_remove => "edu.threaded.init_remove",
            edu_threaded_memcpy_success => "edu.threaded.memcpy_success",
            edu_threaded_memcpy_from_unmapped_iova => "edu.threaded.memcpy_from_unmapped_iova",
            edu_threaded_memcpy_to_unmapped_iova => "edu.threaded.memcpy_to_unmapped_iova",
            edu_threaded_send_msi => "edu.threaded.send_msi",
            edu_threaded_mix_and_match => "edu.threaded.mix_and_match",
            edu_threaded_memcpy_storm => "edu.threaded.memcpy_storm",
            // Every memcpy waited for by interrupt (not upstream).
            dsa_irq_init_remove => "dsa.irq.init_remove",
            dsa_irq_memcpy_success => "dsa.irq.memcpy_success",
            dsa_irq_memcpy_from_unmapped_iova => "dsa.irq.memcpy_from_unmapped_iova",
            dsa_irq_memcpy_to_unmapped_iova => "dsa.irq.memcpy_to_unmapped_iova",
            dsa_irq_send_msi => "dsa.irq.send_msi",
            dsa_irq_mix_and_match => "dsa.irq.mix_and_match",
            dsa_irq_memcpy_storm => "dsa.irq.memcpy_storm",
            ioat_irq_init_remove => "ioat.irq.init_remove",
            ioat_irq_memcpy_success => "ioat.irq.memcpy_success",
            ioat_irq_memcpy_from_unmapped_iova => "ioat.irq.memcpy_from_unmapped_iova",
            ioat_irq_memcpy_to_unmapped_iova => "ioat.irq.memcpy_to_unmapped_iova",
            ioat_irq_send_msi => "ioat.irq.send_msi",
            ioat_irq_mix_and_match => "ioat.irq.mix_and_match",
            ioat_irq_memcpy_storm => "ioat.irq.memcpy_storm",
            edu_irq_init_remove => "edu.irq.init_remove",
            edu_irq_memcpy_success => "edu.irq.memcpy_success",
            edu_irq_memcpy_from_unmapped_iova => "edu.irq.memcpy_from_unmapped_iova",
            edu_irq_memcpy_to_unmapped_iova => "edu.irq.memcpy_to_unmapped_iova",
            edu_irq_send_msi => "edu.irq.send_msi",
            edu_irq_mix_and_match => "edu.irq.mix_and_match",
            edu_irq_memcpy_storm => "edu.irq.memcpy_storm",
        }
    };
    (@each $run:ident; $($fn:ident => $name:literal,)*) => {
        $( #[test] fn $fn() { $run($name); } )*
    };
}
pub(crate) use driver_cases;
