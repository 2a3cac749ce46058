-- A workflow's own row; its nodes and edges follow in the same transaction.
INSERT INTO conveyor_workflows (id, name) VALUES (%(id)s::text, %(name)s::text)
