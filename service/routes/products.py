"""Product routes: public reads; writes as PRODUCT_WRITE_ACCESS allows."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, querystring_schema, request_schema, response_schema

from service import clock, keys
from service.auth import Access, requires
from service.errors import NotFound, PreconditionFailed
from service.ids import parse_id
from service.openapi import (
    IF_MATCH,
    IF_NONE_MATCH,
    error_responses,
    no_content,
    path_id,
    response_headers,
)
from service.queries import products
from service.queries.products import Product, ProductFilter
from service.responses import json_response
from service.schemas.products import (
    ProductCreateSchema,
    ProductListQuerySchema,
    ProductPageSchema,
    ProductSchema,
    ProductUpdateSchema,
)

routes = web.RouteTableDef()

ITEM = "/products/{product_id:[0-9]+}"
_ID_PARAMETER = path_id("product_id", "The product's id; anything but a positive integer is 404")
_PARTIAL_UPDATE = (
    "Only the fields sent change; the others keep their values, as in the original "
    'system (`{"price": 50000}` changes only the price). `description: null` clears it.'
)


@routes.get("/products/")
@docs(
    tags=["products"],
    summary="List products",
    description="Filtered by `q`, `min_price`, `max_price`, `in_stock`; "
    "`count` is the total matching the filters.",
    responses=error_responses(422),
)
@querystring_schema(ProductListQuerySchema)
@response_schema(ProductPageSchema, 200, description="A page of products")
async def list_products(request: web.Request) -> web.Response:
    query = request[keys.QUERY]
    filters = ProductFilter(
        q=query.get("q"),
        min_price_cents=query.get("min_price_cents"),
        max_price_cents=query.get("max_price_cents"),
        in_stock=query.get("in_stock"),
    )
    async with request.app[keys.DATABASE].read(snapshot=True) as conn:
        page = await products.list_products(
            conn, filters=filters, sort=query["sort"], skip=query["skip"], limit=query["limit"]
        )
    return json_response({"data": [product_json(p) for p in page.items], "count": page.count})


@routes.get(ITEM)
@docs(
    tags=["products"],
    summary="Get a product",
    description="With `If-None-Match` holding the current ETag: 304 and no body.",
    parameters=[_ID_PARAMETER, IF_NONE_MATCH],
    responses={
        "304": {"description": "Not Modified: the ETag sent is current"},
        **error_responses(404),
    },
)
@response_schema(ProductSchema, 200, description="The product")
@response_headers(200, "ETag")
@response_headers(304, "ETag")
async def get_product(request: web.Request) -> web.StreamResponse:
    product_id = _product_id(request)
    async with request.app[keys.DATABASE].read() as conn:
        product = await products.get_product(conn, product_id=product_id)
    if product is None:
        raise NotFound("product_not_found", product_id=product_id)
    if _matches_if_none_match(request, product.etag):
        return web.Response(status=304, headers={"ETag": product.etag})
    return _product_response(product)


@routes.post("/products/")
@docs(
    tags=["products"],
    summary="Create a product",
    responses=error_responses(400, 413, 415, 422),
)
@request_schema(ProductCreateSchema)
@response_schema(ProductSchema, 201, description="Created; `Location` names it")
@response_headers(201, "ETag", "Location")
@requires(Access.PRODUCT_WRITE)
async def create_product(request: web.Request) -> web.Response:
    data = request[keys.BODY]
    async with request.app[keys.DATABASE].transaction() as conn:
        product = await products.create_product(conn, **data, now=clock.utc_now())
    return _product_response(product, status=201, location=f"/products/{product.id}")


@routes.put(ITEM)
@docs(
    tags=["products"],
    summary="Update a product (partial, as in the original system)",
    operationId="replace_product",
    description=_PARTIAL_UPDATE,
    parameters=[_ID_PARAMETER, IF_MATCH],
    responses=error_responses(400, 404, 412, 413, 415, 422),
)
@request_schema(ProductUpdateSchema)
@response_schema(ProductSchema, 200, description="The updated product")
@response_headers(200, "ETag")
@requires(Access.PRODUCT_WRITE)
async def put_product(request: web.Request) -> web.Response:
    return await _update(request)


@routes.patch(ITEM)
@docs(
    tags=["products"],
    summary="Update some fields of a product",
    operationId="update_product",
    description=_PARTIAL_UPDATE,
    parameters=[_ID_PARAMETER, IF_MATCH],
    responses=error_responses(400, 404, 412, 413, 415, 422),
)
@request_schema(ProductUpdateSchema)
@response_schema(ProductSchema, 200, description="The updated product")
@response_headers(200, "ETag")
@requires(Access.PRODUCT_WRITE)
async def patch_product(request: web.Request) -> web.Response:
    return await _update(request)


@routes.delete(ITEM)
@docs(
    tags=["products"],
    summary="Delete a product",
    parameters=[_ID_PARAMETER, IF_MATCH],
    responses={**no_content("Deleted"), **error_responses(404, 412)},
)
@requires(Access.PRODUCT_WRITE)
async def delete_product(request: web.Request) -> web.Response:
    product_id = _product_id(request)
    async with request.app[keys.DATABASE].transaction() as conn:
        # Locked: a parallel write waits, then sees the new version (If-Match: 412).
        current = await products.get_for_update(conn, product_id=product_id)
        if current is None:
            raise NotFound("product_not_found", product_id=product_id)
        _check_if_match(request, current.etag)
        await products.delete_product(conn, product_id=product_id)
    return web.Response(status=204)


async def _update(request: web.Request) -> web.Response:
    product_id = _product_id(request)
    changes = request[keys.BODY]
    async with request.app[keys.DATABASE].transaction() as conn:
        # Locked: the fields not sent are written back unchanged, not as another wrote them.
        current = await products.get_for_update(conn, product_id=product_id)
        if current is None:
            raise NotFound("product_not_found", product_id=product_id)
        _check_if_match(request, current.etag)
        product = await products.update_product(
            conn, current=current, changes=changes, now=clock.utc_now()
        )
    return _product_response(product)


def product_json(product: Product) -> dict[str, Any]:
    """The API's representation of a product."""
    return {
        "id": product.id,
        "name": product.name,
        "price": product.price_cents / 100,
        "in_stock": product.in_stock,
        "description": product.description,
        "created_at": product.created_at,
        "updated_at": product.updated_at,
    }


def _product_response(
    product: Product, *, status: int = 200, location: str | None = None
) -> web.Response:
    headers = {"ETag": product.etag}
    if location is not None:
        headers["Location"] = location
    return json_response(product_json(product), status=status, headers=headers)


def _product_id(request: web.Request) -> int:
    raw = request.match_info["product_id"]
    product_id = parse_id(raw)
    if product_id is None:
        raise NotFound("product_not_found", product_id=raw)
    return product_id


def _check_if_match(request: web.Request, etag: str) -> None:
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return
    if etag not in (tag.strip() for tag in header.split(",")):
        raise PreconditionFailed()


def _matches_if_none_match(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags
