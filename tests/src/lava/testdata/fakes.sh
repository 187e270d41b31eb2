#!/bin/sh
# The fake test programs of the recorded LAVA logs in this directory (see README.md).
mkdir -p bin
cat > bin/fake_mixed <<'X'
#!/bin/sh
echo 'TAP version 13'
echo '1..4'
echo 'ok 1 fake.vfio_type1_iommu.pass'
echo '# fake.c:12: expected 0, got -22'
echo 'not ok 2 fake.vfio_type1_iommu.fail'
echo 'ok 3 fake.iommufd.skip # SKIP no 1G hugepages reserved'
echo 'ok 4 fake.iommufd.xfail # XFAIL known upstream bug'
echo '# Totals: pass:1 fail:1 xfail:1 xpass:0 skip:1 error:0'
exit 1
X
cat > bin/fake_short <<'X'
#!/bin/sh
echo 'TAP version 13'
echo '1..3'
echo 'ok 1 fake.iommufd.first'
exit 0
X
cat > bin/fake_gap <<'X'
#!/bin/sh
echo 'TAP version 13'
echo '1..3'
echo 'ok 1 fake.iommufd.before_gap'
sleep 100
echo 'ok 2 fake.iommufd.after_gap'
echo 'ok 3 fake.iommufd.last'
X
cat > bin/fake_poweroff <<'X'
#!/bin/sh
echo 'TAP version 13'
echo '1..3'
echo 'ok 1 fake.iommufd.before_poweroff'
poweroff -f
sleep 10
X
cat > bin/fake_pass <<'X'
#!/bin/sh
echo 'TAP version 13'
echo '1..3'
echo 'ok 1 fake.vfio_type1_iommu.pass'
echo 'ok 2 fake.iommufd.pass'
echo 'ok 3 fake.iommufd.skip # SKIP no 1G hugepages reserved'
echo '# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:1 error:0'
X
chmod 755 bin/*
