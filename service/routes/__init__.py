"""HTTP routes, one RouteTableDef per resource: parse, guard, one unit of work, respond."""
