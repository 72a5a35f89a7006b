"""Removing consumers that are gone: only with nothing pending, checked and removed atomically.

XGROUP DELCONSUMER drops a consumer's pending entries with it, and Redis never delivers those
again (they lie behind the group's last-delivered id). So a consumer is removed only when it has
nothing pending (its entries were claimed by peers, or acknowledged) and has been idle for
``min_idle_ms``; the check and the removal run in one script, so no read can come in between. A
worker removed while stopped comes back by itself: its next XREADGROUP creates it again.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio
import redis.exceptions

from feedback_ingest.redis_errors import access_denied, is_denied_in_script, is_missing_key
from feedback_worker.reader import is_nogroup

# KEYS[1] stream; ARGV: group, min idle (ms), the caller's own consumer name (never removed).
_REMOVE_IDLE = """
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
"""


async def remove_idle_consumers(
    client: redis.asyncio.Redis, stream: str, group: str, min_idle_ms: int, keep: str
) -> list[str]:
    """Remove the group's consumers idle for ``min_idle_ms`` with nothing pending; their names."""
    try:
        raw: Any = await client.eval(_REMOVE_IDLE, 1, stream, group, str(min_idle_ms), keep)
    except redis.exceptions.ResponseError as exc:
        if is_nogroup(exc) or is_missing_key(exc):  # no stream or group: nobody to remove
            return []
        if is_denied_in_script(exc):
            raise access_denied(exc) from exc
        raise
    return [name.decode() if isinstance(name, bytes) else str(name) for name in raw]
