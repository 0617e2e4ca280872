-- Whether the region admin allowed this install's outbound-http destinations inside the
-- network (loopback, private, link-local, metadata, ...): 1 only when an admin asked for it
-- explicitly (`--allow-internal-address`), which region_audit records. Installs made before
-- this column keep 0, so a grant naming an internal address stops loading until allowed.
ALTER TABLE region_installs ADD COLUMN allow_internal_addresses BIGINT NOT NULL DEFAULT 0;
