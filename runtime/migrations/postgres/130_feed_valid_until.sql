-- Until when the revocation feed's last answer is valid (RFC 3339), as the app cloud's nodes
-- renew it: a node that does not follow the feed itself (a FHIR API node taking the tokens of
-- SMART web apps) fails closed once it has passed. Written again only when half its validity
-- is used, so a quiet feed costs no write per poll.
ALTER TABLE runtime_feed ADD COLUMN valid_until TEXT;
