DROP INDEX products_by_price;
DROP INDEX products_by_name;
DROP TABLE products;
