# /dev/vfio/<group> gets the owner, group and mode of the config, by names from the
# guest's /etc/passwd and /etc/group; a second apply leaves it as it is.
. /lib/vm-lib.sh

cat >/etc/vfio-bind.toml <<TOML
user = "alice"
group = "kvm"
mode = "0660"

[[device]]
address = "02:00.0"
TOML
vfio-bind apply
expect_eq "apply exits 0" $? 0
g="$(group_of $E_LONE)"
ls -ln /dev/vfio
expect_eq "node owner:group" "$(stat -c %u:%g /dev/vfio/$g)" "1000:993"
expect_eq "node mode" "$(stat -c %a /dev/vfio/$g)" "660"
expect_eq "/dev/vfio/vfio untouched" "$(stat -c %u:%g /dev/vfio/vfio)" "0:0"
vfio-bind apply 2>/tmp/apply2.err
expect_eq "second apply exits 0" $? 0
check "second apply changes nothing" grep -q "nothing changed" /tmp/apply2.err
# A drop-in overrides the top-level mode; reload converges the node.
mkdir -p /etc/vfio-bind.d
printf 'mode = "0600"\n' >/etc/vfio-bind.d/50-mode.toml
vfio-bind apply
expect_eq "apply with drop-in exits 0" $? 0
expect_eq "drop-in mode applied" "$(stat -c %a /dev/vfio/$g)" "600"
vfio-bind status
finish
