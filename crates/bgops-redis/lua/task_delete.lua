-- Deletes a task, its history, key mapping and index entries. KEYS: task. ARGV: base, id.
local bad = wrong_type(KEYS[1], 'hash')
if bad then return bad end
return task_remove(ARGV[1], ARGV[2])
