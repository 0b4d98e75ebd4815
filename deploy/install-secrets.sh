#!/bin/sh
# zvg-install-secrets SRC DEST [OWNER]
#
# Copies every regular file in SRC (following symlinks, as in Kubernetes secret volumes; hidden
# entries are skipped) into DEST with mode 0600, DEST itself 0700, and with OWNER (uid:gid) also
# chowns them. Used where key files arrive with the wrong owner or mode for a node that refuses
# group-readable keys:
#   - compose: a one-shot root container copies a node's prepared keys into its volume
#     (deploy/compose/compose.yaml, OWNER 10001:10001, the image's zvg user);
#   - Kubernetes: an init container copies the Secret (mode 0440 with fsGroup) into a
#     memory-backed emptyDir (deploy/kubernetes/deployment.yaml, no OWNER: it runs as zvg).
# Each file is written beside its target and renamed, so a reader never sees half a key.
# Exits 1 if SRC holds no file, 2 on bad usage.
set -eu

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
    echo "usage: zvg-install-secrets SRC DEST [OWNER]" >&2
    exit 2
fi
src=$1
dest=$2
owner=${3:-}
if [ ! -d "$src" ]; then
    echo "zvg-install-secrets: $src is not a folder" >&2
    exit 2
fi

umask 077
mkdir -p "$dest"
chmod 0700 "$dest"
count=0
for file in "$src"/*; do
    [ -f "$file" ] || continue
    name=${file##*/}
    tmp="$dest/.$name.tmp"
    cp "$file" "$tmp"
    chmod 0600 "$tmp"
    if [ -n "$owner" ]; then
        chown "$owner" "$tmp"
    fi
    mv -f "$tmp" "$dest/$name"
    count=$((count + 1))
done
if [ "$count" -eq 0 ]; then
    echo "zvg-install-secrets: no files in $src" >&2
    exit 1
fi
if [ -n "$owner" ]; then
    chown "$owner" "$dest"
fi
echo "zvg-install-secrets: installed $count file(s) into $dest"
