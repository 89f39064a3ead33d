#!/usr/bin/env bash
# A single-host Ceph cluster with an S3 gateway, for custody's object-store chunk tier
# (`[chunks] backend = "s3"`, docs/STORAGE.md) in tests, the bench and a laptop:
# one monitor, one manager, one OSD and one RADOS Gateway (RGW), all on 127.0.0.1,
# all in DIR, run as the current user. Needs Debian's packages:
#   apt-get install ceph-mon ceph-mgr ceph-osd radosgw ceph-common
#
#   cluster/ceph-up.sh DIR [RGW_PORT]     starts it (RGW_PORT defaults to 7480)
#   cluster/ceph-down.sh DIR              stops it and removes nothing
#
# On success it writes DIR/s3.env (CUSTODY_S3_ENDPOINT, _ACCESS_KEY, _SECRET_KEY, _REGION) for
# the RGW user `custody`, and prints how long the start took and each daemon's RSS.
#
# The OSD keeps its objects in memory (`memstore`) unless CEPH_OSD_STORE=bluestore, which puts
# them in a 4 GiB sparse file DIR/osd/block. A memstore OSD loses everything when it stops: it
# serves tests and measurements, never evidence.
#
# The monitor listens on RGW_PORT+1. The daemons authenticate with cephx from one keyring,
# DIR/keyring; S3 clients sign every request (SigV4) with the RGW user's keys.
set -euo pipefail

dir=${1:?usage: ceph-up.sh DIR [RGW_PORT]}
port=${2:-7480}
mon_port=$((port + 1))
store=${CEPH_OSD_STORE:-memstore}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf="$dir/ceph.conf"
start=$(date +%s.%N)

for b in ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin monmaptool ceph; do
    command -v "$b" >/dev/null || { echo "ceph-up: $b is missing: apt-get install ceph-mon ceph-mgr ceph-osd radosgw ceph-common" >&2; exit 2; }
done
if [ -e "$dir/run/mon.a.pid" ] && kill -0 "$(cat "$dir/run/mon.a.pid")" 2>/dev/null; then
    echo "ceph-up: a cluster already runs in $dir (cluster/ceph-down.sh $dir first)" >&2
    exit 2
fi

rm -rf "$dir/mon" "$dir/mgr" "$dir/osd" "$dir/run" "$dir/log" "$dir/rgw"
mkdir -p "$dir/mon/a" "$dir/mgr/x" "$dir/osd/0" "$dir/run" "$dir/log" "$dir/rgw"
fsid=$(cat /proc/sys/kernel/random/uuid)

cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = false
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
[mon]
mon data = $dir/mon/\$id
mon cluster log file = $dir/log/cluster.log
[mgr]
mgr data = $dir/mgr/\$id
mgr disabled modules = dashboard prometheus restful
[osd]
osd data = $dir/osd/\$id
osd objectstore = $store
memstore device bytes = 4294967296
bluestore block path = $dir/osd/block
bluestore block size = 4294967296
bluestore block create = true
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728
osd op num shards = 1
osd op num threads per shard = 2
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw data = $dir/rgw
rgw thread pool size = 64
rgw enable usage log = false
rgw dns name = 127.0.0.1
EOF

c=(-c "$conf")
rm -f "$dir/keyring"
ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$dir/keyring" --gen-key -n mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$dir/keyring" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
ceph-mon "${c[@]}" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" >/dev/null
ceph-mon "${c[@]}" -i a
timeout 60 ceph "${c[@]}" --connect-timeout 60 -s >/dev/null
ceph-mgr "${c[@]}" -i x
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
osd_id=$(ceph "${c[@]}" osd new "$osd_uuid")
ceph "${c[@]}" auth get-or-create "osd.$osd_id" mon 'allow profile osd' mgr 'allow profile osd' osd 'allow *' >>"$dir/keyring"
ceph-osd "${c[@]}" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
ceph-osd "${c[@]}" -i "$osd_id"
for _ in $(seq 120); do
    ceph "${c[@]}" osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && break
    sleep 0.5
done
ceph "${c[@]}" osd stat -f json | grep -q '"num_up_osds":1' || { echo "ceph-up: the OSD did not come up (see $dir/log)" >&2; exit 1; }
radosgw "${c[@]}" -n client.rgw.a
for _ in $(seq 180); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.5
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/" || { echo "ceph-up: RGW did not answer on port $port (see $dir/log)" >&2; exit 1; }

access=$(head -c 10 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
secret=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
radosgw-admin "${c[@]}" user create --uid custody --display-name custody --access-key "$access" --secret-key "$secret" >/dev/null
cat >"$dir/s3.env" <<EOF
CUSTODY_S3_ENDPOINT=http://127.0.0.1:$port
CUSTODY_S3_ACCESS_KEY=$access
CUSTODY_S3_SECRET_KEY=$secret
CUSTODY_S3_REGION=default
EOF
end=$(date +%s.%N)
rss() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$(cat "$dir/run/$1.pid")/status"; }
printf 'ceph-up: started in %.1f s (osd store %s); RSS MiB: mon %s, mgr %s, osd %s, rgw %s; S3 at http://127.0.0.1:%s, keys in %s\n' \
    "$(echo "$end - $start" | bc)" "$store" "$(rss mon.a)" "$(rss mgr.x)" "$(rss "osd.$osd_id")" "$(rss client.rgw.a)" "$port" "$dir/s3.env"
